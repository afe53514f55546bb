"""Start a real runatlas (and, for comparison, a real redis-server) on free loopback ports."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis

from tests.helpers import MANAGE, ManagedProcess, base_env, free_port


def wait_for_resp(port: int, process: ManagedProcess, password: str | None = None, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if process.process.poll() is not None:
            raise AssertionError(f"server exited with {process.process.returncode}:\n{process.output()[-3000:]}")
        try:
            redis.Redis(port=port, password=password, socket_timeout=2, protocol=2).ping()
            return
        except redis.exceptions.ConnectionError:
            if time.monotonic() > deadline:
                raise AssertionError(f"port {port} did not answer:\n{process.output()[-3000:]}") from None
            time.sleep(0.05)


@contextmanager
def running_atlas(
    tmp_path: Path, *flags: str, env: dict[str, str] | None = None, port: int | None = None
) -> Iterator[tuple[int, ManagedProcess]]:
    """runatlas on a free port, or on `port` (to restart a node where its clients expect it)."""
    port, metrics_port = port or free_port(), free_port()
    argv = [
        *MANAGE,
        "runatlas",
        "--listen",
        f"127.0.0.1:{port}",
        "--metrics-listen",
        f"127.0.0.1:{metrics_port}",
        "--data-dir",
        str(tmp_path / f"atlas-{port}"),
        *flags,
    ]
    process = ManagedProcess(
        argv, base_env(HELIOS_VAR_DIR=str(tmp_path / "var"), **(env or {})), tmp_path / f"atlas-{port}.log"
    )
    process.metrics_port = metrics_port  # type: ignore[attr-defined]
    try:
        password = flags[flags.index("--requirepass") + 1] if "--requirepass" in flags else None
        wait_for_resp(port, process, password)
        yield port, process
    finally:
        process.stop()


def redis_server_available() -> bool:
    return shutil.which("redis-server") is not None


@contextmanager
def running_redis(tmp_path: Path) -> Iterator[tuple[int, ManagedProcess]]:
    port = free_port()
    argv = [
        "redis-server",
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(tmp_path),
    ]
    process = ManagedProcess(argv, base_env(), tmp_path / f"redis-{port}.log")
    try:
        wait_for_resp(port, process)
        yield port, process
    finally:
        process.stop()
