from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser

from atlas.persistence import backup
from atlas.persistence.files import PersistenceError


class Command(BaseCommand):
    help = "Restore an ATLAS backup (from atlas_backup) into an empty data dir."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("src", help="the backup directory")
        parser.add_argument("--data-dir", required=True, help="an empty or new directory; start runatlas on it")

    def handle(self, *args: object, **options: object) -> None:
        src = Path(str(options["src"]))
        data_dir = Path(str(options["data_dir"]))
        try:
            manifest = backup.restore(src, data_dir)
        except (PersistenceError, OSError) as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(
            f"restored {len(manifest.files())} files into {data_dir}: start runatlas --data-dir {data_dir}"
        )
