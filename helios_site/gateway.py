"""How the gateway starts: gunicorn with uvicorn workers serving helios_site.asgi."""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from helios_site.config import Config


@dataclass(frozen=True)
class GatewayOptions:
    host: str
    port: int
    workers: int

    @property
    def bind(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.bind}"

    @property
    def metrics_dir(self) -> Path:
        """Where the worker processes keep their Prometheus samples (one directory per port)."""
        return Path(settings.VAR_DIR) / "prometheus" / f"gateway-{self.port}"


def gateway_options(config: Config, listen: str | None = None, workers: int | None = None) -> GatewayOptions:
    host, port = config.get("gateway.listen", flag=listen, flag_name="--listen")
    count = config.get("gateway.workers", flag=workers, flag_name="--workers")
    return GatewayOptions(host=host, port=port, workers=count)


def gunicorn_argv(options: GatewayOptions) -> list[str]:
    return [
        sys.executable,
        "-m",
        "gunicorn",
        "helios_site.asgi:application",
        "--config",
        "python:helios_site.gunicorn_conf",
        "--bind",
        options.bind,
        "--workers",
        str(options.workers),
    ]


def reset_metrics_dir(path: Path) -> None:
    """Samples of a previous run would be summed into this one's: start from an empty directory."""
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)


def run(options: GatewayOptions) -> None:
    """Replace this process with gunicorn, so that signals reach gunicorn's master directly."""
    reset_metrics_dir(options.metrics_dir)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(options.metrics_dir)
    argv = gunicorn_argv(options)
    os.execv(argv[0], argv)  # noqa: S606 - argv is built above, not taken from input
