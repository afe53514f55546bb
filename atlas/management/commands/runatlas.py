from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from atlas import runner
from atlas.conf import AtlasSettings
from atlas.persistence.files import PersistenceError
from atlas.server import ProtectedModeError
from helios_site.config import ConfigError


class Command(BaseCommand):
    help = "Run an ATLAS node: a Redis-compatible key-value server (RESP2/RESP3)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--listen", help="host:port for RESP clients (atlas.listen, default 127.0.0.1:6380)")
        parser.add_argument("--data-dir", help="where persistence files live (atlas.data_dir, default var/atlas)")
        parser.add_argument("--sync-mode", help="AOF fsync: every|interval|none (or always|everysec|no)")
        parser.add_argument("--requirepass", help="password clients must AUTH with (atlas.requirepass)")
        parser.add_argument("--protected-mode", help="yes|no: refuse non-loopback listening without a password")
        parser.add_argument("--maxclients", help="maximum connected clients (atlas.maxclients, default 10000)")
        parser.add_argument("--timeout", help="close clients idle this many seconds; 0 never (atlas.timeout)")
        parser.add_argument("--databases", help="number of databases (atlas.databases, default 16)")
        parser.add_argument("--proto-max-bulk-len", help="largest bulk string accepted (default 512mb)")
        parser.add_argument("--client-query-buffer-limit", help="largest pending request (default 1gb)")
        parser.add_argument("--client-output-buffer-limit", help="backlog that drops a slow subscriber (64mb)")
        parser.add_argument("--metrics-listen", help="host:port of /metrics (atlas.metrics_listen, 127.0.0.1:9091)")
        parser.add_argument("--appendonly", help="yes|no: keep the AOF (atlas.appendonly, default yes)")
        parser.add_argument("--snapshot-interval", help="snapshot + AOF rewrite period, e.g. 5m, or off (default 5m)")

    def handle(self, *args: object, **options: object) -> None:
        flags = {name: value for name, value in options.items() if isinstance(value, str)}
        try:
            atlas_settings = AtlasSettings.from_config(settings.CONFIG, **flags)
            runner.run(atlas_settings)
        except (ConfigError, ProtectedModeError, PersistenceError) as exc:
            raise CommandError(str(exc)) from None
