"""gunicorn settings for the gateway (`--config python:helios_site.gunicorn_conf`)."""

from typing import Any

from prometheus_client import multiprocess

worker_class = "helios_site.workers.UvicornWorker"
graceful_timeout = 10
timeout = 30
keepalive = 5
control_socket_disable = True  # gunicorn's gunicornc socket: one per user, it would clash between gateways
accesslog = None  # the access log is written by Django's middleware, as JSON

logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "helios_site.logs.JsonFormatter"}},
    "handlers": {"stdout": {"class": "logging.StreamHandler", "stream": "ext://sys.stdout", "formatter": "json"}},
    "root": {"handlers": ["stdout"], "level": "INFO"},
    "loggers": {
        "gunicorn.error": {"handlers": ["stdout"], "level": "INFO", "propagate": False},
        "gunicorn.access": {"handlers": [], "level": "CRITICAL", "propagate": False},
    },
}


def child_exit(server: Any, worker: Any) -> None:
    """Drop the live gauges of a worker that exited (its counters stay in the sums)."""
    multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]
