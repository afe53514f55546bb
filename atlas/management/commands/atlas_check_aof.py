import sys
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser

from atlas.persistence import checker
from atlas.persistence.files import PersistenceError


class Command(BaseCommand):
    help = (
        "Check an ATLAS AOF file (or every file of a data dir): report the first bad offset; "
        "--fix truncates the file there."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", help="an appendonly.N.aof file, a data dir, or its atlas.manifest")
        parser.add_argument("--fix", action="store_true", help="truncate each bad file after its last good record")

    def handle(self, *args: object, **options: object) -> None:
        path = Path(str(options["path"]))
        if not path.exists():
            raise CommandError(f"{path} does not exist")
        try:
            status = checker.run(path, bool(options["fix"]), self.stdout)
        except (PersistenceError, OSError) as exc:
            raise CommandError(str(exc)) from None
        if status:
            sys.exit(status)
