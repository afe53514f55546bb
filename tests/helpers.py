"""Helpers for tests that start real HELIOS processes on loopback."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import psycopg
import requests

BASE_DIR = Path(__file__).resolve().parent.parent
MANAGE = [sys.executable, str(BASE_DIR / "manage.py")]


def free_port() -> int:
    """A port that was free a moment ago on 127.0.0.1 (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def base_env(**overrides: str) -> dict[str, str]:
    """The test process's environment without HELIOS_* and DATABASE_URL leaking in, plus overrides."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HELIOS_", "OTEL_")) and k != "DATABASE_URL"}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    env.update(overrides)
    return env


class ManagedProcess:
    """A child process in its own process group, with its output captured to a file."""

    def __init__(self, argv: Sequence[str], env: Mapping[str, str], log_path: Path) -> None:
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            list(argv), env=dict(env), stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True, cwd=BASE_DIR
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def signal(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.process.pid, sig)

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM the whole group, SIGKILL what is left after `timeout`; returns the exit code."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)  # stragglers of the group, if any
        self.process.wait()
        self._log.close()
        return self.process.returncode


def wait_for_http(url: str, process: ManagedProcess | None = None, timeout: float = 30.0) -> requests.Response:
    """GET `url` until it answers; fail early, with the output, if `process` exits meanwhile."""
    deadline = time.monotonic() + timeout
    while True:
        if process is not None and process.process.poll() is not None:
            raise AssertionError(f"process exited with {process.process.returncode}:\n{process.output()[-4000:]}")
        try:
            return requests.get(url, timeout=5)
        except (requests.ConnectionError, requests.Timeout):
            if time.monotonic() > deadline:
                tail = process.output()[-4000:] if process else ""
                raise AssertionError(f"{url} did not answer within {timeout}s\n{tail}") from None
            time.sleep(0.1)


@contextlib.contextmanager
def scratch_database_url(tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database for processes started by a test: SQLite in tmp_path, or, in the
    PostgreSQL pass, a new database on that server, dropped afterwards."""
    server_url = os.environ.get("DATABASE_URL", "")
    if not server_url.startswith(("postgres://", "postgresql://")):
        yield f"sqlite:///{tmp_path / 'helios.sqlite3'}"
        return
    name = f"helios_e2e_{uuid.uuid4().hex[:12]}"
    admin_url = server_url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield server_url.rsplit("/", 1)[0] + "/" + name
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def migrate(env: Mapping[str, str]) -> None:
    result = subprocess.run([*MANAGE, "migrate", "--noinput"], env=dict(env), capture_output=True, cwd=BASE_DIR)
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()


def scratch_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="helios-test-"))


def assert_error(response: Any, status: int, code: str) -> dict[str, Any]:
    """The response is an API error {"detail", "code"} with this status and code; its body."""
    assert response.status_code == status, response.content
    body: dict[str, Any] = response.json()
    assert body["code"] == code, body
    assert isinstance(body["detail"], str)
    assert body["detail"]
    return body
