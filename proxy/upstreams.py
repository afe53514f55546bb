"""Upstreams and their backends: state per backend, pooled keep-alive connections, active checks.

A Backend carries the pure state of proxy.health and proxy.breaker plus its idle connections; an
Upstream is a named group of backends with a balancer and a retry budget. UpstreamConnection is
the asyncio protocol of one connection to a backend: it parses responses with httptools and hands
each event to the exchange that owns it (a ResponseSink, implemented in proxy.server).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol, cast

import httptools

from proxy.balancer import Balancer, make_balancer
from proxy.breaker import CircuitBreaker, CircuitState
from proxy.conf import BackendSettings, UpstreamSettings
from proxy.health import ActiveHealth, OutlierDetector, RetryBudget

logger = logging.getLogger(__name__)

# Bytes a connection may hold in its write buffer before the other side stops reading.
WRITE_HIGH_WATER = 256 * 1024
WRITE_LOW_WATER = 64 * 1024
RETRY_BUDGET_MIN_PER_SECOND = 5.0


class ResponseSink(Protocol):
    """What an upstream connection reports to the exchange it serves."""

    def on_response_head(self, status: int, reason: bytes, headers: list[tuple[bytes, bytes]]) -> None: ...

    def on_response_body(self, data: bytes) -> None: ...

    def on_response_complete(self, keep_alive: bool) -> None: ...

    def on_upstream_upgraded(self, rest: bytes) -> None: ...

    def on_tunnel_data(self, data: bytes) -> None: ...

    def on_upstream_lost(self, connection: UpstreamConnection, exc: Exception | None) -> None: ...

    def on_upstream_invalid(self, connection: UpstreamConnection, reason: str) -> None: ...

    def on_upstream_writable(self, writable: bool) -> None: ...

    def flush(self) -> None: ...


class UpstreamConnection(asyncio.Protocol):
    """One keep-alive connection to a backend; owned by one exchange at a time, else idle in the pool."""

    __slots__ = (
        "_headers",
        "_in_head",
        "_interim",
        "_reason",
        "_skip_rest",
        "backend",
        "closed",
        "head_request",
        "idle_since",
        "out",
        "parser",
        "received",
        "requests",
        "sink",
        "transport",
        "tunnel",
    )

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.sink: ResponseSink | None = None
        self.out: list[bytes] = []
        self.closed = False
        self.idle_since = 0.0
        self.requests = 0  # requests sent on this connection (reuse > 0 means it was pooled)
        self.received = 0  # response bytes of the current request
        self.head_request = False
        self.tunnel = False
        self._reason = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._in_head = False
        self._interim = False
        self._skip_rest = False

    # -- asyncio

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        transport.set_write_buffer_limits(high=WRITE_HIGH_WATER, low=WRITE_LOW_WATER)

    def data_received(self, data: bytes) -> None:
        sink = self.sink
        if sink is None:
            # A backend talking while idle breaks the framing of the next response: drop it.
            self.close()
            return
        self.received += len(data)
        if self.tunnel:
            sink.on_tunnel_data(data)
            sink.flush()
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            self.tunnel = True
            sink.on_upstream_upgraded(data[int(exc.args[0]) :])
        except httptools.HttpParserError as exc:
            self.close()
            sink.on_upstream_invalid(self, f"invalid response from the backend: {exc}")
        if self._skip_rest:
            # A response to HEAD announced a body that will not come: start the next one afresh.
            self._skip_rest = False
            self.parser = httptools.HttpResponseParser(self)
        sink.flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.backend.forget(self)
        sink, self.sink = self.sink, None
        if sink is not None:
            sink.on_upstream_lost(self, exc)
            sink.flush()

    def pause_writing(self) -> None:
        if self.sink is not None:
            self.sink.on_upstream_writable(False)

    def resume_writing(self) -> None:
        if self.sink is not None:
            self.sink.on_upstream_writable(True)

    # -- httptools callbacks

    def on_message_begin(self) -> None:
        self._reason = b""
        self._headers = []
        self._in_head = True

    def on_status(self, reason: bytes) -> None:
        self._reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._in_head:  # after the head they are trailers, which are not forwarded
            self._headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        self._in_head = False
        status = self.parser.get_status_code()
        self._interim = 100 <= status < 200 and status != 101
        sink = self.sink
        if sink is None or self._skip_rest:
            return
        sink.on_response_head(status, self._reason, self._headers)
        if self.head_request and not self._interim and status != 101 and self.sink is sink:
            self._skip_rest = True
            self._complete(sink)

    def on_body(self, body: bytes) -> None:
        if self.sink is not None and not self._skip_rest:
            self.sink.on_response_body(body)

    def on_message_complete(self) -> None:
        sink = self.sink
        if sink is None or self._interim or self.tunnel or self._skip_rest or self.parser.should_upgrade():
            return
        self._complete(sink)

    def _complete(self, sink: ResponseSink) -> None:
        keep_alive = self.parser.should_keep_alive() and not self.closed
        self.sink = None
        sink.on_response_complete(keep_alive)

    # -- used by the exchange

    def start(self, sink: ResponseSink, head_request: bool) -> None:
        self.sink = sink
        self.head_request = head_request
        self.requests += 1
        self.received = 0

    def flush(self) -> None:
        if self.out and self.transport is not None and not self.closed:
            self.transport.writelines(self.out)
        self.out = []

    def pause_reading(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.resume_reading()

    def close(self) -> None:
        self.sink = None
        if not self.closed:
            self.closed = True
            self.backend.forget(self)
            if self.transport is not None:
                self.transport.close()


class Backend:
    """One backend of an upstream: where it is, how it is doing, and its idle connections."""

    def __init__(self, settings: BackendSettings, upstream: UpstreamSettings, clock: Callable[[], float]) -> None:
        self.url = settings.url
        self.host = settings.host
        self.port = settings.port
        self.host_header = f"{settings.host}:{settings.port}".encode()
        self.weight = settings.weight
        self.upstream_name = upstream.name
        self.active = 0
        self.requests = 0
        self.failures = 0
        self.removed = False
        self.idle: list[UpstreamConnection] = []
        self.health = ActiveHealth(upstream.health_check)
        self.outlier = OutlierDetector(upstream.outlier)
        self._clock = clock
        self.breaker = CircuitBreaker(upstream.breaker, clock, on_transition=self._circuit_moved)

    def update(self, settings: BackendSettings, upstream: UpstreamSettings) -> None:
        """New settings at a reload: the state is kept unless the policy it follows changed."""
        self.weight = settings.weight
        self.health.policy = upstream.health_check
        self.outlier.policy = upstream.outlier
        if self.breaker.policy != upstream.breaker:
            self.breaker = CircuitBreaker(upstream.breaker, self._clock, on_transition=self._circuit_moved)

    @property
    def name(self) -> str:
        return self.url

    def usable(self, now: float) -> bool:
        return not self.removed and self.health.healthy and not self.outlier.ejected(now) and self.breaker.available()

    def acquire(self, now: float, keepalive_timeout: float) -> UpstreamConnection | None:
        """The most recently used idle connection that is still fresh, if any."""
        idle = self.idle
        while idle:
            connection = idle.pop()
            if not connection.closed and now - connection.idle_since < keepalive_timeout:
                return connection
            connection.close()
        return None

    def release(self, connection: UpstreamConnection, now: float, max_idle: int) -> None:
        if connection.closed:
            return
        if self.removed or len(self.idle) >= max_idle:
            connection.close()
            return
        connection.idle_since = now
        self.idle.append(connection)

    def forget(self, connection: UpstreamConnection) -> None:
        with contextlib.suppress(ValueError):
            self.idle.remove(connection)

    def close_idle(self, older_than: float | None = None) -> None:
        keep = []
        for connection in self.idle:
            if older_than is None or connection.idle_since < older_than:
                connection.sink = None
                connection.closed = True
                if connection.transport is not None:
                    connection.transport.close()
            else:
                keep.append(connection)
        self.idle = keep

    def status(self, now: float) -> dict[str, Any]:
        return {
            "url": self.url,
            "weight": self.weight,
            "healthy": self.health.healthy,
            "ejected": self.outlier.ejected(now),
            "eligible": self.usable(now),
            "circuit": self.breaker.state.value,
            "active_requests": self.active,
            "requests": self.requests,
            "failures": self.failures,
            "idle_connections": len(self.idle),
            "last_error": self.health.last_error or (self.outlier.reason if self.outlier.ejected(now) else ""),
        }

    def _circuit_moved(self, old: CircuitState, new: CircuitState) -> None:
        logger.warning(
            "circuit of %s %s -> %s",
            self.url,
            old.value,
            new.value,
            extra={"action": "circuit_" + new.value, "upstream": self.upstream_name, "backend": self.url},
        )


class Upstream:
    """A named group of backends behind one balancer and one retry budget."""

    def __init__(self, settings: UpstreamSettings, backends: list[Backend], retry_budget_ratio: float) -> None:
        self.name = settings.name
        self.settings = settings
        self.backends = backends
        self.balancer: Balancer[Backend] = make_balancer(settings.algorithm, backends)
        self.retry_budget = RetryBudget(ratio=retry_budget_ratio, min_per_second=RETRY_BUDGET_MIN_PER_SECOND)
        self.hash_header = settings.hash_header
        self.uses_key = settings.algorithm == "consistent_hash"

    def pick(self, now: float, key: str | None, tried: list[Backend]) -> Backend | None:
        if tried:
            return self.balancer.pick(lambda backend: backend not in tried and backend.usable(now), key)
        return self.balancer.pick(lambda backend: backend.usable(now), key)

    def record(self, backend: Backend, now: float, *, failed: bool, latency: float) -> None:
        """The outcome of one request: feeds the circuit breaker and the outlier detector."""
        backend.requests += 1
        if failed:
            backend.failures += 1
            backend.breaker.on_failure()
        else:
            backend.breaker.on_success()
        reason = backend.outlier.record(now, error=failed, latency=latency)
        if not reason:
            return
        ejected = sum(1 for other in self.backends if other.outlier.ejected(now))
        if (ejected + 1) * 100 > backend.outlier.policy.max_ejected_percent * len(self.backends):
            return  # too many out already: keep this one serving rather than empty the upstream
        duration = backend.outlier.eject(now, reason)
        logger.warning(
            "ejected %s for %.0fs: %s",
            backend.url,
            duration,
            reason,
            extra={"action": "backend_ejected", "upstream": self.name, "backend": backend.url},
        )

    def status(self, now: float) -> dict[str, Any]:
        return {
            "name": self.name,
            "algorithm": self.settings.algorithm,
            "backends": [backend.status(now) for backend in self.backends],
        }


async def open_connection(backend: Backend, timeout: float) -> UpstreamConnection:
    """A new connection to `backend`; OSError or TimeoutError when it cannot be had in `timeout`."""
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(timeout):
        _, protocol = await loop.create_connection(lambda: UpstreamConnection(backend), backend.host, backend.port)
    return protocol


async def probe(backend: Backend, path: str, timeout: float) -> tuple[int | None, str]:
    """One active check: (status, "") or (None, why it failed)."""
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(backend.host, backend.port)
            writer.write(
                b"GET %s HTTP/1.1\r\nhost: %s\r\nuser-agent: helios-proxy-health\r\nconnection: close\r\n\r\n"
                % (path.encode(), backend.host_header)
            )
            line = await reader.readline()
    except TimeoutError:
        return None, f"no answer within {timeout:g}s"
    except OSError as exc:
        return None, exc.strerror or type(exc).__name__
    finally:
        if writer is not None:
            writer.close()
    parts = line.split()
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
        return None, "not an HTTP response"
    return int(parts[1]), ""


async def check_forever(upstream: Upstream) -> None:
    """Active health checks of every backend of `upstream`, every interval, until cancelled."""
    policy = upstream.settings.health_check
    while True:
        results = await asyncio.gather(*(probe(backend, policy.path, policy.timeout) for backend in upstream.backends))
        for backend, (status, error) in zip(upstream.backends, results, strict=True):
            ok = status is not None and policy.accepts(status)
            reason = error or f"status {status}"
            if backend.health.record(ok, "" if ok else reason):
                logger.warning(
                    "backend %s is %s%s",
                    backend.url,
                    "up" if ok else "down",
                    "" if ok else f": {reason}",
                    extra={"action": "backend_up" if ok else "backend_down", "upstream": upstream.name},
                )
        await asyncio.sleep(policy.interval)


def monotonic() -> float:
    return time.monotonic()
