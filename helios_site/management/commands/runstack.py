import sys

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from helios_site import gateway, stack
from helios_site.supervisor import GRACE_SECONDS, Supervisor


class Command(BaseCommand):
    help = "Run the whole HELIOS stack under one supervisor (what `make run` does); Ctrl-C stops it."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--grace-seconds", type=float, default=GRACE_SECONDS, help="time to stop before SIGKILL")

    def handle(self, *args: object, **options: float) -> None:
        url = gateway.gateway_options(settings.CONFIG).url
        atlas_host, atlas_port = settings.CONFIG.get("atlas.listen")
        self.stdout.write(f"HELIOS starting: admin {url}/admin/  API docs {url}/api/docs/  API {url}/api/v1/")
        proxy_host, proxy_port = settings.CONFIG.get("proxy.listen")
        self.stdout.write(f"proxy http://{proxy_host}:{proxy_port}/  ATLAS redis-cli -h {atlas_host} -p {atlas_port}")
        self.stdout.flush()
        processes = stack.stack_processes(settings.CONFIG)
        sys.exit(Supervisor(processes, grace_seconds=options["grace_seconds"]).run())
