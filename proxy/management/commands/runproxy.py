import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from helios_site.config import ConfigError
from proxy import master
from proxy.conf import ProxyFlags, load_settings


class Command(BaseCommand):
    help = "Start the reverse proxy: load balancing, health checks and circuit breakers in front of the backends."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--listen", help="host:port to serve (proxy.listen, default 127.0.0.1:8080)")
        parser.add_argument(
            "--backend",
            action="append",
            default=[],
            help="backend URL of the `default` upstream; repeat for several (proxy.backends)",
        )
        parser.add_argument("--config", help="YAML configuration file (instead of HELIOS_CONFIG)")
        parser.add_argument("--workers", help="worker processes sharing the port (proxy.workers, default 1)")
        parser.add_argument(
            "--metrics-listen", help="host:port of /metrics and /status (proxy.metrics_listen, default 127.0.0.1:9093)"
        )
        parser.add_argument("--check", action="store_true", help="validate the configuration, print it and exit")

    def handle(self, *args: object, **options: Any) -> None:
        flags = ProxyFlags(
            listen=options["listen"],
            workers=options["workers"],
            metrics_listen=options["metrics_listen"],
            backends=tuple(options["backend"]),
            config_file=options["config"],
        )
        try:
            settings = load_settings(flags)
        except ConfigError as exc:
            raise CommandError(str(exc)) from None
        if options["check"]:
            for upstream in settings.upstreams:
                backends = ", ".join(f"{backend.url} (weight {backend.weight})" for backend in upstream.backends)
                self.stdout.write(f"upstream {upstream.name}: {upstream.algorithm}: {backends}")
            for route in settings.routes:
                self.stdout.write(f"route {route.host or '*'}{route.path_prefix} -> {route.upstream}")
            return
        sys.exit(master.run(settings, flags))
