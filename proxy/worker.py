"""A proxy worker process: `python -m proxy.worker`, started by the master (proxy.master).

The master hands over its listening socket (one per worker, SO_REUSEPORT) and one end of a
socketpair, and describes the worker in the HELIOS_PROXY_WORKER environment variable (JSON: index,
file descriptors, the runproxy flags). The worker resolves its own settings from those flags, so a
SIGHUP re-reads them exactly as the master would. It answers "snapshot" lines on the control
socket with a JSON line, and drains when it gets SIGTERM or SIGINT or when the master goes away.
"""

from __future__ import annotations

import asyncio
import json
import logging
import logging.config
import os
import signal
import socket
import sys

import uvloop

from helios_site.config import ConfigError
from proxy.conf import ProxyFlags, load_settings
from proxy.server import Worker

logger = logging.getLogger("proxy.worker")  # __name__ is __main__ under python -m
WORKER_ENV = "HELIOS_PROXY_WORKER"


def configure_logging(level: str) -> None:
    """HELIOS's JSON log lines on stdout, as Django's LOGGING gives the other processes."""
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "filters": {"request_context": {"()": "helios_site.logs.RequestContextFilter"}},
            "formatters": {"json": {"()": "helios_site.logs.JsonFormatter"}},
            "handlers": {
                "stdout": {
                    "class": "logging.StreamHandler",
                    "stream": "ext://sys.stdout",
                    "formatter": "json",
                    "filters": ["request_context"],
                }
            },
            "root": {"handlers": ["stdout"], "level": level.upper()},
        }
    )


async def _answer_master(worker: Worker, control: socket.socket, stop: asyncio.Event) -> None:
    reader, writer = await asyncio.open_connection(sock=control)
    try:
        while True:
            line = await reader.readline()
            if not line:
                break  # the master is gone: drain and go
            if line.strip() == b"snapshot":
                writer.write(json.dumps(worker.snapshot()).encode() + b"\n")
                await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        stop.set()
        writer.close()


async def serve(worker: Worker, listener: socket.socket, control: socket.socket) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGHUP, worker.reload)
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    await worker.serve(listener)
    answering = loop.create_task(_answer_master(worker, control, stop))
    host, port = worker.settings.listen
    logger.info(
        "proxy worker %d serving on %s:%d",
        worker.index,
        host,
        port,
        extra={"action": "worker_started", "worker": worker.index},
    )
    await stop.wait()
    logger.info("proxy worker %d draining", worker.index, extra={"action": "worker_draining", "worker": worker.index})
    await worker.drain()
    answering.cancel()
    logger.info("proxy worker %d stopped", worker.index, extra={"action": "worker_stopped", "worker": worker.index})


def main() -> int:
    spec = json.loads(os.environ[WORKER_ENV])
    flags = ProxyFlags.from_json(spec["flags"])
    try:
        settings = load_settings(flags)
    except ConfigError as exc:
        sys.stderr.write(f"helios proxy worker: configuration error: {exc}\n")
        return 2
    configure_logging(settings.log_level)
    listener = socket.socket(fileno=int(spec["listen_fd"]))
    control = socket.socket(fileno=int(spec["control_fd"]))
    worker = Worker(settings, flags, index=int(spec["index"]))
    uvloop.run(serve(worker, listener, control))
    return 0


if __name__ == "__main__":
    sys.exit(main())
