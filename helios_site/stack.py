"""The processes `make run` starts (through `manage.py runstack`)."""

from __future__ import annotations

import sys

from helios_site.config import BASE_DIR
from helios_site.supervisor import ProcessSpec

MANAGE = [sys.executable, str(BASE_DIR / "manage.py")]


def stack_processes() -> list[ProcessSpec]:
    """Every HELIOS process of a development stack, each reading the same configuration."""
    return [
        ProcessSpec("gateway", [*MANAGE, "rungateway"]),
        # jobs: one worker (metrics on worker.metrics_listen, 127.0.0.1:9092 by default)
        ProcessSpec("worker", [*MANAGE, "runworker", "--worker-id", "worker-1"]),
    ]
