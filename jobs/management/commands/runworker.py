from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from helios_site.config import ConfigError
from jobs import conf, worker


class Command(BaseCommand):
    help = (
        "Run a job worker: claim jobs of the given queues, run their tasks, retry failures with backoff. "
        "SIGTERM stops it gracefully. (HELIOS's runworker, not channels'.)"
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--worker-id", help="name of this worker in jobs and logs (worker.worker_id; <host>-<pid>)")
        parser.add_argument("--queues", help="comma-separated queues to serve (worker.queues; default every queue)")
        parser.add_argument("--concurrency", help="jobs run at once, one thread each (worker.concurrency, default 4)")
        parser.add_argument("--prefetch", help="jobs claimed ahead of free threads (worker.prefetch, default 4)")
        parser.add_argument("--poll-interval", help="longest idle wait between claims, e.g. 5s (worker.poll_interval)")
        parser.add_argument("--lease", help="visibility timeout of a claimed job, e.g. 30s (worker.lease)")
        parser.add_argument("--grace", help="on SIGTERM, time in-flight jobs get to finish (worker.shutdown_grace, 8s)")
        parser.add_argument("--metrics-listen", help="host:port of the Prometheus metrics (worker.metrics_listen)")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            worker_settings = conf.worker_settings(
                settings.CONFIG,
                worker_id=options["worker_id"],
                queues=options["queues"],
                concurrency=options["concurrency"],
                prefetch=options["prefetch"],
                poll_interval=options["poll_interval"],
                lease=options["lease"],
                shutdown_grace=options["grace"],
                metrics_listen=options["metrics_listen"],
            )
        except ConfigError as exc:
            raise CommandError(str(exc)) from None
        try:
            code = worker.run(worker_settings)
        except worker.MetricsUnavailable as exc:
            raise CommandError(str(exc)) from None
        if code:
            raise SystemExit(code)
