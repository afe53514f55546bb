"""The processes `make run` starts (through `manage.py runstack`)."""

from __future__ import annotations

import sys

from helios_site import config
from helios_site.config import BASE_DIR
from helios_site.supervisor import ProcessSpec

MANAGE = [sys.executable, str(BASE_DIR / "manage.py")]


def stack_processes() -> list[ProcessSpec]:
    """Every HELIOS process of a development stack, each reading the same configuration."""
    return [ProcessSpec("gateway", [*MANAGE, "rungateway"]), proxy_process()]


# -- proxy: the reverse proxy on 127.0.0.1:8080 (proxy.listen) in front of the gateway


def proxy_process() -> ProcessSpec:
    """`runproxy` with the gateway as its backend, unless the configuration names its own backends."""
    cfg = config.load()
    argv = [*MANAGE, "runproxy"]
    if cfg.get("proxy.backends") is None and cfg.get("proxy.upstreams") is None:
        host, port = cfg.get("gateway.listen")
        host = f"[{host}]" if ":" in host else host
        argv += ["--backend", f"http://{host}:{port}"]
    return ProcessSpec("proxy", argv)
