"""The worker's typed settings, resolved from flags > HELIOS_WORKER_* env > YAML > defaults.

Read lazily: nothing here runs at import time, so a bad value fails the command that needs it, with
one line naming the setting, rather than every process that imports the jobs app.
"""

from __future__ import annotations

import os
import re
import socket
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from helios_site.config import Config, ConfigError

QUEUE_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
WORKER_ID = re.compile(r"^[A-Za-z0-9_.:@-]{1,128}$")
DEFAULT_QUEUE = "default"
# A lease shorter than this cannot be renewed reliably by a heartbeat every third of it.
MIN_LEASE_SECONDS = 0.5


@dataclass(frozen=True)
class WorkerSettings:
    """Everything one worker process needs to know about itself."""

    worker_id: str
    queues: tuple[str, ...]
    concurrency: int
    prefetch: int
    poll_interval: float
    lease: float
    shutdown_grace: float
    metrics_host: str
    metrics_port: int

    @property
    def heartbeat_interval(self) -> float:
        return self.lease / 3


def _default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def worker_settings(
    config: Config,
    *,
    worker_id: str | None = None,
    queues: str | None = None,
    concurrency: Any = None,
    prefetch: Any = None,
    poll_interval: Any = None,
    lease: Any = None,
    shutdown_grace: Any = None,
    metrics_listen: Any = None,
) -> WorkerSettings:
    """The settings of a worker from its command-line flags (None means not given) and `config`.

    Raises ConfigError, whose message names the bad setting.
    """
    resolved_id = config.get("worker.worker_id", flag=worker_id, flag_name="--worker-id") or _default_worker_id()
    if not WORKER_ID.match(resolved_id):
        raise ConfigError(f"--worker-id (worker.worker_id): expected 1-128 of [A-Za-z0-9_.:@-], got {resolved_id!r}")
    queue_names = config.get("worker.queues", flag=queues, flag_name="--queues")
    for name in queue_names:
        if not QUEUE_NAME.match(name):
            raise ConfigError(f"--queues (worker.queues): {name!r} is not a queue name (1-64 of [A-Za-z0-9_.:-])")
    lease_seconds = config.get("worker.lease", flag=lease, flag_name="--lease")
    if lease_seconds < MIN_LEASE_SECONDS:
        raise ConfigError(f"--lease (worker.lease): must be at least {MIN_LEASE_SECONDS}s, got {lease_seconds}s")
    host, port = config.get("worker.metrics_listen", flag=metrics_listen, flag_name="--metrics-listen")
    return WorkerSettings(
        worker_id=resolved_id,
        queues=tuple(dict.fromkeys(queue_names)),
        concurrency=config.get("worker.concurrency", flag=concurrency, flag_name="--concurrency"),
        prefetch=config.get("worker.prefetch", flag=prefetch, flag_name="--prefetch"),
        poll_interval=config.get("worker.poll_interval", flag=poll_interval, flag_name="--poll-interval"),
        lease=lease_seconds,
        shutdown_grace=config.get("worker.shutdown_grace", flag=shutdown_grace, flag_name="--grace"),
        metrics_host=host,
        metrics_port=port,
    )


def default_max_attempts() -> int:
    """worker.max_attempts: the attempts a job gets when neither its task nor its enqueuer says."""
    return int(settings.CONFIG.get("worker.max_attempts"))


def task_imports() -> list[str]:
    """worker.imports: modules to import for their @task functions, besides every app's tasks.py."""
    return list(settings.CONFIG.get("worker.imports"))


def http_allow_private() -> bool:
    return bool(settings.CONFIG.get("worker.http_allow_private"))
