"""The processes `make run` starts (through `manage.py runstack`)."""

from __future__ import annotations

import sys

from helios_site.config import BASE_DIR, Config
from helios_site.supervisor import ProcessSpec

MANAGE = [sys.executable, str(BASE_DIR / "manage.py")]


def stack_processes(config: Config) -> list[ProcessSpec]:
    """Every HELIOS process of a development stack, each reading the same configuration.

    The gateway is pointed at the stack's ATLAS (HELIOS_ATLAS_URL) unless one is configured.
    """
    atlas_host, atlas_port = config.get("atlas.listen")
    atlas_url = config.get("atlas.url") or f"redis://{atlas_host}:{atlas_port}/0"
    return [
        ProcessSpec("atlas", [*MANAGE, "runatlas"]),
        ProcessSpec("gateway", [*MANAGE, "rungateway"], env={"HELIOS_ATLAS_URL": atlas_url}),
        proxy_process(config),
        # jobs: one worker (metrics on worker.metrics_listen, 127.0.0.1:9092 by default)
        ProcessSpec("worker", [*MANAGE, "runworker", "--worker-id", "worker-1"]),
    ]


def proxy_process(config: Config) -> ProcessSpec:
    """`runproxy` on proxy.listen (127.0.0.1:8080) with the gateway as its backend, unless the
    configuration names its own backends."""
    argv = [*MANAGE, "runproxy"]
    if config.get("proxy.backends") is None and config.get("proxy.upstreams") is None:
        host, port = config.get("gateway.listen")
        host = f"[{host}]" if ":" in host else host
        argv += ["--backend", f"http://{host}:{port}"]
    return ProcessSpec("proxy", argv)
