"""The proxy's master process: binds the port, runs the workers, serves /metrics and /status.

The master binds one listening socket per worker with SO_REUSEPORT (so the kernel spreads
connections over the workers, and a bind error stops the start with a clear message), starts each
worker as `python -m proxy.worker` with its socket, and keeps the socket so that a worker that dies
is replaced without losing the connections waiting in its queue. SIGHUP is checked here and
passed to the workers, which reload without closing a connection; SIGTERM (or Ctrl-C) closes the
listeners and lets the workers drain. /metrics sums the workers' counters, /status merges their
views of the backends (JSON, for the admin dashboard), /healthz says the master is up.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import uvloop

from helios_site.config import BASE_DIR, ConfigError
from proxy.conf import ProxyFlags, ProxySettings, load_settings
from proxy.metrics import merge_backends, render_prometheus
from proxy.worker import WORKER_ENV

logger = logging.getLogger(__name__)

SNAPSHOT_TIMEOUT_SECONDS = 2.0
HTTP_READ_TIMEOUT_SECONDS = 5.0
MONITOR_SECONDS = 0.2
MAX_RESTARTS = 5
RESTART_WINDOW_SECONDS = 60.0
# After SIGTERM, workers get the drain timeout plus this much before SIGKILL.
KILL_GRACE_SECONDS = 3.0


def bind_listener(host: str, port: int) -> socket.socket:
    """A listening TCP socket with SO_REUSEPORT, so that several can share `port`."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        sock.listen(1024)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


@dataclass
class _WorkerProcess:
    index: int
    listener: socket.socket
    process: subprocess.Popen[bytes] | None = None
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    exits: collections.deque[float] = field(default_factory=collections.deque)


class Master:
    """Runs `settings.workers` workers until SIGTERM; see the module docstring."""

    def __init__(self, settings: ProxySettings, flags: ProxyFlags) -> None:
        self.settings = settings
        self.flags = flags
        self.workers: list[_WorkerProcess] = []
        self._stop = asyncio.Event()
        self._exit_code = 0

    def run(self) -> int:
        return uvloop.run(self._main())

    async def _main(self) -> int:
        self._stop = asyncio.Event()
        host, port = self.settings.listen
        try:
            first = bind_listener(host, port)
            port = first.getsockname()[1]
            listeners = [first] + [bind_listener(host, port) for _ in range(self.settings.workers - 1)]
        except OSError as exc:
            logger.error("cannot listen on %s:%d: %s", host, port, exc.strerror, extra={"action": "listen_failed"})
            return 1
        metrics_host, metrics_port = self.settings.metrics_listen
        try:
            metrics = await asyncio.start_server(self._serve_http, metrics_host, metrics_port)
        except OSError as exc:
            logger.error(
                "cannot listen on %s:%d for metrics: %s",
                metrics_host,
                metrics_port,
                exc.strerror,
                extra={"action": "listen_failed"},
            )
            for listener in listeners:
                listener.close()
            return 1
        self.workers = [_WorkerProcess(index, listener) for index, listener in enumerate(listeners)]
        for worker in self.workers:
            await self._spawn(worker)
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGHUP, self._reload)
        loop.add_signal_handler(signal.SIGTERM, self._stop.set)
        loop.add_signal_handler(signal.SIGINT, self._stop.set)
        logger.info(
            "proxy listening on %s:%d with %d workers, metrics and status on %s:%d",
            host,
            port,
            len(self.workers),
            metrics_host,
            metrics_port,
            extra={"action": "proxy_started"},
        )
        monitor = loop.create_task(self._monitor())
        await self._stop.wait()
        monitor.cancel()
        await self._shutdown()
        metrics.close()
        logger.info("proxy stopped", extra={"action": "proxy_stopped"})
        return self._exit_code

    async def _spawn(self, worker: _WorkerProcess) -> None:
        ours, theirs = socket.socketpair()
        spec = {
            "index": worker.index,
            "listen_fd": worker.listener.fileno(),
            "control_fd": theirs.fileno(),
            "flags": self.flags.to_json(),
        }
        env = {**os.environ, WORKER_ENV: json.dumps(spec)}
        worker.process = subprocess.Popen(
            [sys.executable, "-m", "proxy.worker"],
            env=env,
            pass_fds=(worker.listener.fileno(), theirs.fileno()),
            cwd=BASE_DIR,
        )
        theirs.close()
        worker.reader, worker.writer = await asyncio.open_connection(sock=ours)

    async def _monitor(self) -> None:
        while True:
            await asyncio.sleep(MONITOR_SECONDS)
            for worker in self.workers:
                process = worker.process
                if process is None or process.poll() is None:
                    continue
                now = time.monotonic()
                worker.exits.append(now)
                while worker.exits and now - worker.exits[0] > RESTART_WINDOW_SECONDS:
                    worker.exits.popleft()
                logger.error(
                    "proxy worker %d exited with code %s",
                    worker.index,
                    process.returncode,
                    extra={"action": "worker_exited", "worker": worker.index},
                )
                if worker.writer is not None:
                    worker.writer.close()
                if len(worker.exits) > MAX_RESTARTS:
                    logger.error("proxy worker %d keeps dying: stopping", worker.index, extra={"action": "crash_loop"})
                    self._exit_code = 1
                    self._stop.set()
                    return
                await self._spawn(worker)

    def _reload(self) -> None:
        try:
            load_settings(self.flags)
        except ConfigError as exc:
            logger.error("configuration refused, keeping the running one: %s", exc, extra={"action": "reload_refused"})
            return
        logger.info("reloading the configuration", extra={"action": "reload"})
        for worker in self.workers:
            if worker.process is not None and worker.process.poll() is None:
                worker.process.send_signal(signal.SIGHUP)

    async def _shutdown(self) -> None:
        for worker in self.workers:
            worker.listener.close()
            if worker.process is not None and worker.process.poll() is None:
                worker.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.settings.drain_timeout + KILL_GRACE_SECONDS
        while time.monotonic() < deadline and any(
            worker.process is not None and worker.process.poll() is None for worker in self.workers
        ):
            await asyncio.sleep(0.05)
        for worker in self.workers:
            if worker.process is not None and worker.process.poll() is None:
                worker.process.kill()
                worker.process.wait()
            if worker.writer is not None:
                worker.writer.close()

    async def snapshots(self) -> list[dict[str, Any]]:
        """Every live worker's snapshot (a worker that does not answer in time is left out)."""
        results = await asyncio.gather(*(self._snapshot(worker) for worker in self.workers))
        return [result for result in results if result is not None]

    async def _snapshot(self, worker: _WorkerProcess) -> dict[str, Any] | None:
        if worker.reader is None or worker.writer is None:
            return None
        async with worker.lock:
            try:
                worker.writer.write(b"snapshot\n")
                async with asyncio.timeout(SNAPSHOT_TIMEOUT_SECONDS):
                    line = await worker.reader.readline()
            except (OSError, TimeoutError):
                return None
        if not line:
            return None
        result: dict[str, Any] = json.loads(line)
        return result

    def status_document(self, snapshots: list[dict[str, Any]]) -> dict[str, Any]:
        host, port = self.settings.listen
        return {
            "listen": f"{host}:{port}",
            "workers": [
                {
                    "index": snapshot["index"],
                    "pid": snapshot["pid"],
                    "connections": snapshot["connections"],
                    "draining": snapshot["draining"],
                }
                for snapshot in snapshots
            ],
            "upstreams": merge_backends(snapshots),
            "routes": snapshots[0]["routes"] if snapshots else [],
        }

    async def _serve_http(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(HTTP_READ_TIMEOUT_SECONDS):
                head = await reader.readuntil(b"\r\n\r\n")
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
            writer.close()
            return
        parts = head.split(b"\r\n", 1)[0].split()
        method, path = (parts[0], parts[1].split(b"?", 1)[0]) if len(parts) == 3 else (b"", b"")
        content_type = "application/json"
        status = "200 OK"
        if method not in (b"GET", b"HEAD"):
            status, body = "405 Method Not Allowed", _json_error("Use GET.", "method_not_allowed")
        elif path == b"/metrics":
            content_type = "text/plain; version=0.0.4; charset=utf-8"
            body = render_prometheus(await self.snapshots()).encode()
        elif path == b"/status":
            body = json.dumps(self.status_document(await self.snapshots()), indent=1).encode()
        elif path == b"/healthz":
            body = b'{"status": "ok"}'
        else:
            status, body = "404 Not Found", _json_error("Try /metrics, /status or /healthz.", "not_found")
        response = (
            f"HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {len(body)}\r\n"
            "connection: close\r\n\r\n"
        ).encode()
        with contextlib.suppress(OSError):
            writer.write(response if method == b"HEAD" else response + body)
            await writer.drain()
        writer.close()


def _json_error(detail: str, code: str) -> bytes:
    return json.dumps({"detail": detail, "code": code}).encode()


def run(settings: ProxySettings, flags: ProxyFlags) -> int:
    """Run the proxy until SIGTERM or SIGINT; the exit code for the command."""
    return Master(settings, flags).run()
