"""Real processes for the proxy tests: backends (tests/proxy/backend.py) and `manage.py runproxy`."""

from __future__ import annotations

import http.client
import json
import socket
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from tests.helpers import MANAGE, ManagedProcess, base_env, free_port

BACKEND_SCRIPT = Path(__file__).with_name("backend.py")


class Backend:
    def __init__(self, name: str, tmp_path: Path) -> None:
        self.name = name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = ManagedProcess(
            [sys.executable, str(BACKEND_SCRIPT), name, str(self.port)], base_env(), tmp_path / f"backend-{name}.log"
        )
        wait_port(self.port, self.process)

    def get(self, path: str) -> str:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            conn.request("GET", path)
            return conn.getresponse().read().decode()
        finally:
            conn.close()

    def hits(self) -> int:
        return int(self.get("/admin/hits"))

    def stop(self) -> None:
        self.process.stop()


def wait_port(port: int, process: ManagedProcess, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if process.process.poll() is not None:
            raise AssertionError(f"process exited with {process.process.returncode}:\n{process.output()[-4000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise AssertionError(f"port {port} not open within {timeout}s:\n{process.output()[-4000:]}") from None
            time.sleep(0.05)


class Proxy:
    """`manage.py runproxy` with a YAML file of its own; `reconfigure` rewrites it and sends SIGHUP."""

    def __init__(
        self, tmp_path: Path, proxy_section: dict[str, Any], *, workers: int = 1, args: tuple[str, ...] = ()
    ) -> None:
        self.port = free_port()
        self.metrics_port = free_port()
        self.config_path = tmp_path / f"proxy-{self.port}.yaml"
        self.workers = workers
        self.write_config(proxy_section)
        argv = [
            *MANAGE,
            "runproxy",
            "--listen",
            f"127.0.0.1:{self.port}",
            "--metrics-listen",
            f"127.0.0.1:{self.metrics_port}",
            "--workers",
            str(workers),
            "--config",
            str(self.config_path),
            *args,
        ]
        self.process = ManagedProcess(
            argv, base_env(HELIOS_VAR_DIR=str(tmp_path / "var")), tmp_path / f"proxy-{self.port}.log"
        )
        self.wait_ready()

    def write_config(self, proxy_section: dict[str, Any]) -> None:
        self.config_path.write_text(yaml.safe_dump({"proxy": proxy_section}))

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if len(self.status()["workers"]) == self.workers:
                    wait_port(self.port, self.process)
                    return
            except OSError:
                pass
            if self.process.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"proxy not ready:\n{self.process.output()[-4000:]}")
            time.sleep(0.1)

    def reconfigure(self, proxy_section: dict[str, Any]) -> None:
        import signal

        self.write_config(proxy_section)
        self.process.signal(signal.SIGHUP)

    def _metrics_get(self, path: str) -> str:
        conn = http.client.HTTPConnection("127.0.0.1", self.metrics_port, timeout=5)
        try:
            conn.request("GET", path)
            return conn.getresponse().read().decode()
        finally:
            conn.close()

    def status(self) -> dict[str, Any]:
        return json.loads(self._metrics_get("/status"))

    def metrics(self) -> str:
        return self._metrics_get("/metrics")

    def backend_status(self, url: str, upstream: str = "default") -> dict[str, Any]:
        for up in self.status()["upstreams"]:
            if up["name"] == upstream:
                for backend in up["backends"]:
                    if backend["url"] == url:
                        return backend
        raise AssertionError(f"{url} not in the status of {upstream}")

    def worker_pids(self) -> list[int]:
        return [worker["pid"] for worker in self.status()["workers"]]

    def connection(self, timeout: float = 10) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        conn = self.connection()
        try:
            conn.request("GET", path, headers=headers or {})
            response = conn.getresponse()
            return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
        finally:
            conn.close()

    def stop(self) -> int:
        return self.process.stop()


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def raw_exchange(port: int, data: bytes, timeout: float = 5.0) -> bytes:
    """Send `data` on a fresh connection and read until the proxy closes it (or `timeout`)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        chunks = []
        try:
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
        except TimeoutError:
            pass
        return b"".join(chunks)


def upstream_section(backends: list[Backend], **settings: Any) -> dict[str, Any]:
    """A proxy section with one upstream `default` over `backends` and fast health checks."""
    upstream = {
        "backends": [backend.url for backend in backends],
        "health_check": {"interval": "200ms", "timeout": "500ms", "unhealthy_threshold": 2, "healthy_threshold": 1},
        **settings,
    }
    return {"upstreams": {"default": upstream}, "access_log": True}
