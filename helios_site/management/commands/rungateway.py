from typing import cast

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from helios_site import gateway
from helios_site.config import ConfigError


class Command(BaseCommand):
    help = "Start the gateway: gunicorn with uvicorn workers serving the API, the admin and /metrics."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--listen", help="host:port to bind (gateway.listen, default 127.0.0.1:8443)")
        parser.add_argument("--workers", help="gunicorn worker processes (gateway.workers, default 2)")
        parser.add_argument("--dry-run", action="store_true", help="print the gunicorn command and exit")

    def handle(self, *args: object, **options: object) -> None:
        try:
            opts = gateway.gateway_options(
                settings.CONFIG,
                listen=cast(str | None, options["listen"]),
                workers=cast(int | None, options["workers"]),
            )
        except ConfigError as exc:
            raise CommandError(str(exc)) from None
        if options["dry_run"]:
            self.stdout.write(" ".join(gateway.gunicorn_argv(opts)))
            return
        gateway.run(opts)
