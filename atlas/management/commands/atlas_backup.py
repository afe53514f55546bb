from pathlib import Path

import redis
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from atlas.persistence import backup
from atlas.persistence.files import PersistenceError
from helios_site.config import ConfigError


class Command(BaseCommand):
    help = "Take a consistent backup of a running ATLAS node (fresh snapshot + AOF tail, manifest, checksums)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("dest", help="a new or empty directory for the backup")
        parser.add_argument("--url", help="redis:// URL of the node (default: atlas.url, else atlas.listen)")
        parser.add_argument("--data-dir", help="the node's data dir (default: asked from the node, CONFIG GET dir)")
        parser.add_argument("--snapshot-timeout", type=float, default=600.0, help="seconds to wait for the snapshot")

    def handle(self, *args: object, **options: object) -> None:
        try:
            url = options["url"] or settings.CONFIG.get("atlas.url")
            if not url:
                host, port = settings.CONFIG.get("atlas.listen")
                password = settings.CONFIG.get("atlas.requirepass")
                url = f"redis://{':' + password + '@' if password else ''}{host}:{port}/0"
        except ConfigError as exc:
            raise CommandError(str(exc)) from None
        client = redis.Redis.from_url(str(url), socket_timeout=30, decode_responses=True)
        data_dir = Path(str(options["data_dir"])) if options["data_dir"] else None
        try:
            report = backup.backup(
                client, data_dir, Path(str(options["dest"])), float(str(options["snapshot_timeout"]))
            )
        except redis.exceptions.RedisError as exc:
            raise CommandError(f"cannot reach the ATLAS node at {url}: {exc}") from None
        except (PersistenceError, OSError) as exc:
            raise CommandError(str(exc)) from None
        finally:
            client.close()
        self.stdout.write(
            f"backup of {report.keys} keys in {report.dest} ({len(report.files)} files, {report.seconds:.2f} s)"
        )
