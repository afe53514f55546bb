"""Prometheus metrics of an ATLAS node, served by a small asyncio HTTP endpoint on the server's own
event loop (no thread: the collector reads live state between two commands, never during one).

Command statistics are plain counters on each Command (no per-command prometheus call on the
hot path); the collector turns them into metrics at scrape time.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric, SummaryMetricFamily
from prometheus_client.registry import Collector

from atlas.commands.server import resident_memory_bytes
from atlas.commands.session import TABLE_UNIQUE, ServerState

logger = logging.getLogger(__name__)

MAX_REQUEST_BYTES = 8192


class AtlasCollector(Collector):
    """Reads the server state when Prometheus scrapes."""

    def __init__(self, state: ServerState) -> None:
        self.state = state

    def collect(self) -> Iterator[Metric]:
        state = self.state
        keys = GaugeMetricFamily("atlas_store_keys", "Keys in the keyspace, by database.", labels=["db"])
        for db in state.store.dbs:
            if db.data:
                keys.add_metric([str(db.index)], len(db.data))
        yield keys
        calls = CounterMetricFamily("atlas_commands", "Commands executed, by command.", labels=["cmd"])
        duration = SummaryMetricFamily(
            "atlas_command_duration_seconds", "Time spent executing commands, by command.", labels=["cmd"]
        )
        for cmd in TABLE_UNIQUE:
            if cmd.calls:
                calls.add_metric([cmd.name], cmd.calls)
                duration.add_metric([cmd.name], cmd.calls, cmd.usec)
        yield calls
        yield duration
        yield GaugeMetricFamily("atlas_connected_clients", "Connected clients.", value=len(state.sessions))
        yield GaugeMetricFamily("atlas_blocked_clients", "Clients blocked on keys.", value=len(state.blocked_sessions))
        yield GaugeMetricFamily("atlas_memory_bytes", "Resident memory of the process.", value=resident_memory_bytes())
        yield CounterMetricFamily("atlas_expired_keys", "Keys deleted by expiry.", value=state.store.expired_keys)
        yield CounterMetricFamily("atlas_connections_received", "Connections accepted.", value=state.total_connections)


def registry_for(state: ServerState) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(AtlasCollector(state))
    return registry


async def serve_metrics(registry: CollectorRegistry, host: str, port: int) -> asyncio.AbstractServer:
    """Answer GET /metrics (anything else: 404) over HTTP/1.0-style one-shot connections."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=5)
            path = request.split(b" ", 2)[1] if request.count(b" ") >= 2 else b""
            if request.startswith(b"GET ") and path.split(b"?")[0] == b"/metrics":
                body = generate_latest(registry)
                head = f"HTTP/1.1 200 OK\r\nContent-Type: {CONTENT_TYPE_LATEST}\r\n"
            else:
                body = b"not found\n"
                head = "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\n"
            writer.write(f"{head}Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, host, port, limit=MAX_REQUEST_BYTES)
    logger.info("metrics on http://%s:%d/metrics", host, port, extra={"action": "metrics_listening"})
    return server
