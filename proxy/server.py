"""The data plane of one worker process: client connections, exchanges, reload and drain.

ClientConnection is an asyncio.Protocol whose data_received only feeds httptools; the parser's
callbacks build an Exchange per request, which routes it, picks a backend, borrows a pooled
UpstreamConnection and relays the response. Everything on the request path is a callback, not a
coroutine: only a new backend connection is awaited (in a task). Writes are collected in `out`
lists and flushed once per read, so a small response costs one send. Back-pressure: when a
transport's write buffer passes its high-water mark, the other side stops reading until it drains,
so a body of any size streams through in constant memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections import deque
from typing import Any, cast

import httptools

from proxy import protocol
from proxy.accesslog import AccessLog
from proxy.conf import ProxyFlags, ProxySettings, load_settings
from proxy.metrics import Metrics
from proxy.routing import Route, Router, normalize_host
from proxy.upstreams import (
    WRITE_HIGH_WATER,
    WRITE_LOW_WATER,
    Backend,
    Upstream,
    UpstreamConnection,
    check_forever,
    open_connection,
)

logger = logging.getLogger(__name__)
monotonic = time.monotonic

# What a client connection is waiting for, and so what its deadline means.
IDLE, HEADER, REQUEST, TUNNEL = range(4)
# Why reading from a client is paused (a bit each).
PAUSE_UPSTREAM, PAUSE_PIPELINE, PAUSE_PENDING = 1, 2, 4
# How the response body is framed towards the client.
NO_BODY, LENGTH, CHUNKED, UNTIL_CLOSE, TUNNELED = range(5)

MAX_HEADERS = 100
# Request body bytes held while the backend connection is being opened.
PENDING_LIMIT = 256 * 1024
SWEEP_SECONDS = 0.25
LINGER_SECONDS = 2.0
LISTEN_BACKLOG = 1024


class Refusal(Exception):
    """A request the proxy answers itself with a 4xx and a closed connection."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail


class ClientConnection(asyncio.Protocol):
    """One client connection: parses requests, runs their exchanges one at a time, keeps alive."""

    __slots__ = (
        "_head_size",
        "_headers",
        "_in_head",
        "_paused",
        "_url",
        "client_ip",
        "closing",
        "current",
        "deadline",
        "deadline_kind",
        "out",
        "parser",
        "parsing",
        "queue",
        "refusal",
        "transport",
        "tunnel",
        "upgrading",
        "worker",
        "write_paused",
    )

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.client_ip = b"-"
        self.out: list[bytes] = []
        self.current: Exchange | None = None  # the exchange whose response is being sent
        self.parsing: Exchange | None = None  # the exchange whose request is being read
        self.queue: deque[Exchange] = deque()  # pipelined requests waiting their turn
        self.tunnel: UpstreamConnection | None = None
        self.upgrading: Exchange | None = None
        self.refusal: Refusal | None = None
        self.write_paused = False
        self.closing = False
        self.deadline = 0.0
        self.deadline_kind = IDLE
        self._paused = 0
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._head_size = 0
        self._in_head = False

    # -- asyncio

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        transport.set_write_buffer_limits(high=WRITE_HIGH_WATER, low=WRITE_LOW_WATER)
        peer = transport.get_extra_info("peername")
        if peer:
            self.client_ip = str(peer[0]).encode()
        worker = self.worker
        worker.connections.add(self)
        worker.metrics.connections_total += 1
        # A connection that never sends a byte is closed quietly after the header timeout.
        self.set_deadline(IDLE, worker.settings.header_timeout)
        if worker.draining:
            self.close()

    def data_received(self, data: bytes) -> None:
        if self.tunnel is not None:
            self.tunnel.out.append(data)
            self.tunnel.flush()
            self.set_deadline(TUNNEL, self.worker.settings.idle_timeout)
            return
        if self.upgrading is not None:
            self.upgrading.hold(data)
            return
        if self.closing:
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            exchange = self.parsing
            if exchange is not None and not exchange.done:
                self.upgrading = exchange
                exchange.hold(data[int(exc.args[0]) :])
        except httptools.HttpParserError as exc:
            self.refuse(self.refusal or Refusal(400, "bad_request", f"Malformed request: {exc}."))
        self.flush_all()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        self.worker.connections.discard(self)
        exchanges = [self.current, *self.queue] if self.current is not None else list(self.queue)
        self.queue.clear()
        for exchange in exchanges:
            if exchange is not None:
                exchange.abandon()
        if self.tunnel is not None:
            self.tunnel.flush()
            self.tunnel.close()
            self.tunnel = None

    def pause_writing(self) -> None:
        self.write_paused = True
        exchange = self.current
        if exchange is not None and exchange.conn is not None:
            exchange.conn.pause_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        exchange = self.current
        if exchange is not None and exchange.conn is not None:
            exchange.conn.resume_reading()

    # -- httptools callbacks

    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = []
        self._head_size = 0
        self._in_head = True
        if self.current is None:
            self.set_deadline(HEADER, self.worker.settings.header_timeout)

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._head_size += len(url)
        if self._head_size > self.worker.settings.max_header_size:
            self.refusal = Refusal(414, "uri_too_long", "The request target is too long.")
            raise self.refusal

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self._in_head:
            return  # a trailer: not forwarded
        self._head_size += len(name) + len(value) + 4
        if self._head_size > self.worker.settings.max_header_size or len(self._headers) >= MAX_HEADERS:
            self.refusal = Refusal(431, "headers_too_large", "The request headers are too large.")
            raise self.refusal
        self._headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        self._in_head = False
        parser = self.parser
        exchange = Exchange(
            self,
            parser.get_method(),
            self._url,
            self._headers,
            http11=parser.get_http_version() == "1.1",
            keep_alive=parser.should_keep_alive(),
            upgrade=parser.should_upgrade(),
        )
        refusal = exchange.refusal()
        if refusal is not None:
            self.refusal = refusal
            raise refusal
        self.parsing = exchange
        if self.current is None:
            self.current = exchange
            exchange.start()
        else:
            self.queue.append(exchange)
            self.pause(PAUSE_PIPELINE)

    def on_body(self, body: bytes) -> None:
        exchange = self.parsing
        if exchange is not None:
            exchange.on_request_body(body)

    def on_message_complete(self) -> None:
        exchange = self.parsing
        if exchange is not None:
            exchange.on_request_complete()

    # -- used by exchanges and the worker

    def set_deadline(self, kind: int, seconds: float) -> None:
        self.deadline_kind = kind
        self.deadline = monotonic() + seconds

    def on_deadline(self) -> None:
        kind = self.deadline_kind
        if kind == HEADER:
            self.refuse(Refusal(408, "request_timeout", "The request head did not arrive in time."))
        elif kind == REQUEST and self.current is not None:
            self.current.on_timeout()
        else:
            self.close()
        self.flush_all()

    def pause(self, reason: int) -> None:
        if not self._paused and self.transport is not None and not self.closing:
            self.transport.pause_reading()
        self._paused |= reason

    def resume(self, reason: int) -> None:
        if not self._paused & reason:
            return
        self._paused &= ~reason
        if not self._paused and self.transport is not None and not self.closing:
            self.transport.resume_reading()

    def flush(self) -> None:
        if self.out:
            if self.transport is not None and not self.transport.is_closing():
                self.transport.writelines(self.out)
            self.out = []

    def flush_all(self) -> None:
        self.flush()
        exchange = self.current
        if exchange is not None and exchange.conn is not None:
            exchange.conn.flush()

    def refuse(self, refusal: Refusal) -> None:
        """Answer a bad request with its 4xx (unless a response is already on its way) and close."""
        exchange = self.current if self.current is not None and not self.current.done else None
        if exchange is not None and self.parsing is exchange:
            exchange.fail(refusal)
        else:
            if exchange is not None:
                exchange.abandon()
            self.out.append(
                protocol.error_response(refusal.status, refusal.code, refusal.detail, request_id=None, close=True)
            )
            self.worker.count_refusal(self, refusal)
        for queued in self.queue:
            queued.abandon()
        self.queue.clear()
        self.linger()

    def exchange_finished(self, exchange: Exchange, keep_alive: bool) -> None:
        if exchange is not self.current:
            return
        self.current = None
        if not keep_alive or self.closing or self.worker.draining:
            if exchange.request_done:
                self.close()
            else:
                self.linger()  # the client may still be sending the body we did not wait for
            return
        if self.queue:
            following = self.queue.popleft()
            if not self.queue:
                self.resume(PAUSE_PIPELINE)
            self.current = following
            following.start()
        else:
            settings = self.worker.settings
            if self._in_head:
                self.set_deadline(HEADER, settings.header_timeout)
            else:
                self.set_deadline(IDLE, settings.idle_timeout)

    def close(self) -> None:
        self.closing = True
        self.flush()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def linger(self) -> None:
        """Close after an error answer without losing it: a close with unread request bytes makes the
        kernel send a reset that can destroy the answer, so shut down our side, read and discard
        what the client still sends for a moment, then close (nginx's lingering close)."""
        transport = self.transport
        self.closing = True
        self.flush()
        if transport is None or transport.is_closing():
            return
        if not transport.can_write_eof():
            transport.close()
            return
        transport.write_eof()
        if self._paused:
            self._paused = 0
            transport.resume_reading()
        self.set_deadline(IDLE, LINGER_SECONDS)

    def abort(self) -> None:
        """Cut the connection: the response was already under way when it failed."""
        self.closing = True
        self.out = []
        if self.transport is not None:
            self.transport.abort()


class Exchange:
    """One request and its response through the proxy, with retries on other backends."""

    __slots__ = (
        "backend",
        "body_received",
        "bytes_out",
        "chunked",
        "client",
        "conn",
        "dispatched_at",
        "done",
        "drop",
        "error",
        "forwarded_for",
        "head",
        "headers",
        "held",
        "holding",
        "host",
        "http11",
        "keep_alive",
        "keep_client",
        "length",
        "method",
        "mode",
        "pending",
        "pending_size",
        "request_done",
        "request_id",
        "response_started",
        "retryable",
        "started",
        "status",
        "target",
        "tried",
        "until_close",
        "upgrade",
        "upgrade_value",
        "upstream",
        "worker",
    )

    def __init__(
        self,
        client: ClientConnection,
        method: bytes,
        target: bytes,
        headers: list[tuple[bytes, bytes]],
        *,
        http11: bool,
        keep_alive: bool,
        upgrade: bool,
    ) -> None:
        self.client = client
        self.worker = client.worker
        self.started = monotonic()
        self.method = method
        self.target = target
        self.headers = headers
        self.http11 = http11
        self.keep_alive = keep_alive
        self.upgrade = upgrade
        host, forwarded_for, request_id, drop, chunked, length, upgrade_value = protocol.note_request_headers(headers)
        self.host = host
        self.forwarded_for = forwarded_for
        self.drop = drop
        self.chunked = chunked
        self.length = length
        self.upgrade_value = upgrade_value
        self.request_id = self.worker.request_ids.pick(request_id)
        self.retryable = method in protocol.IDEMPOTENT_METHODS and not chunked and not length and not upgrade
        self.request_done = False
        self.body_received = 0
        self.upstream: Upstream | None = None
        self.backend: Backend | None = None
        self.holding = False  # counted in backend.active
        self.tried: list[Backend] = []
        self.conn: UpstreamConnection | None = None
        self.head = b""
        self.pending: list[bytes] = []
        self.pending_size = 0
        self.held: list[bytes] = []
        self.dispatched_at = 0.0
        self.status = 0
        self.mode = NO_BODY
        self.until_close = False
        self.response_started = False
        self.keep_client = keep_alive
        self.bytes_out = 0
        self.done = False
        self.error = ""

    # -- request side

    def refusal(self) -> Refusal | None:
        """A reason to refuse the request from its head alone."""
        if self.method == b"CONNECT":
            return Refusal(405, "method_not_allowed", "CONNECT is not served by this proxy.")
        if self.length > self.worker.settings.max_body_size:
            return Refusal(413, "body_too_large", "The request body is too large.")
        return None

    def start(self) -> None:
        worker = self.worker
        client = self.client
        client.set_deadline(REQUEST, worker.settings.request_timeout)
        target = self.target
        host = self.host
        if target.startswith((b"http://", b"https://")):  # absolute form
            url = httptools.parse_url(target)
            host = url.host + (b":%d" % url.port if url.port else b"")
            target = (url.path or b"/") + (b"?" + url.query if url.query else b"")
            self.target = target
        path = target.split(b"?", 1)[0].decode("latin-1")
        route = worker.router.match(normalize_host(host.decode("latin-1")) if host else "", path)
        if route is None:
            self.respond_error(404, "no_route", "No route matches this host and path.")
            return
        upstream = self.upstream = worker.upstreams[route.upstream]
        upstream.retry_budget.record_request(self.started)
        framing = b""
        if self.chunked:
            framing = b"transfer-encoding: chunked\r\n"
        if self.upgrade:
            framing += b"connection: upgrade\r\nupgrade: " + self.upgrade_value + b"\r\n"
        self.head = protocol.request_head(
            self.method,
            target,
            self.headers,
            drop=self.drop,
            client_ip=client.client_ip,
            forwarded_for=self.forwarded_for,
            forwarded_host=host,
            request_id=self.request_id,
            framing=framing,
        )
        self.dispatch()

    def dispatch(self) -> None:
        upstream = self.upstream
        assert upstream is not None
        now = monotonic()
        key = None
        if upstream.uses_key:
            key = self._hash_key(upstream)
        backend = upstream.pick(now, key, self.tried)
        if backend is None:
            if self.tried:
                self.respond_error(502, "bad_gateway", f"No backend could serve the request ({self.error}).")
            else:
                self.respond_error(503, "no_healthy_backend", f"No backend of upstream {upstream.name} is available.")
            return
        self.tried.append(backend)
        self.backend = backend
        self.holding = True
        backend.active += 1
        backend.breaker.on_dispatch()
        self.dispatched_at = now
        conn = backend.acquire(now, self.worker.settings.upstream_keepalive_timeout)
        if conn is not None:
            self.attach(conn)
        else:
            asyncio.get_running_loop().create_task(self._connect(backend))

    def _hash_key(self, upstream: Upstream) -> str:
        if upstream.hash_header is not None:
            wanted = upstream.hash_header.encode()
            for name, value in self.headers:
                if name == wanted:
                    return value.decode("latin-1")
        return self.client.client_ip.decode()

    async def _connect(self, backend: Backend) -> None:
        try:
            conn = await open_connection(backend, self.worker.settings.connect_timeout)
        except (OSError, TimeoutError) as exc:
            if not self.done and self.backend is backend and self.conn is None:
                reason = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or type(exc).__name__)
                self.upstream_failed(f"connect to {backend.url}: {reason}", count=True)
                self.client.flush_all()
            return
        if self.done or self.backend is not backend or not self.holding:
            backend.release(conn, monotonic(), self.worker.settings.upstream_keepalive)
            return
        self.attach(conn)
        self.client.flush_all()

    def attach(self, conn: UpstreamConnection) -> None:
        self.conn = conn
        conn.start(self, self.method == b"HEAD")
        head = self.head
        if self.host is None:
            head = head[:-2] + b"host: " + conn.backend.host_header + b"\r\n\r\n"
        conn.out.append(head)
        if self.pending:
            conn.out.extend(self.pending)
            self.pending = []
            self.pending_size = 0
            self.client.resume(PAUSE_PENDING)
        if self.client.write_paused:
            conn.pause_reading()

    def on_request_body(self, data: bytes) -> None:
        if self.done:
            return
        self.body_received += len(data)
        if self.body_received > self.worker.settings.max_body_size:
            refusal = Refusal(413, "body_too_large", "The request body is too large.")
            self.client.refusal = refusal
            raise refusal
        pieces = (protocol.chunk_head(len(data)), data, protocol.CRLF) if self.chunked else (data,)
        if self.conn is not None:
            self.conn.out.extend(pieces)
        else:
            self.pending.extend(pieces)
            self.pending_size += len(data)
            if self.pending_size > PENDING_LIMIT:
                self.client.pause(PAUSE_PENDING)

    def on_request_complete(self) -> None:
        self.request_done = True
        if self.done or not self.chunked:
            return
        if self.conn is not None:
            self.conn.out.append(protocol.LAST_CHUNK)
        else:
            self.pending.append(protocol.LAST_CHUNK)

    def hold(self, data: bytes) -> None:
        """Bytes the client sent after an upgrade request, kept until the backend agrees to upgrade."""
        if data:
            self.held.append(data)
            if sum(len(piece) for piece in self.held) > PENDING_LIMIT:
                self.client.pause(PAUSE_PENDING)

    # -- response side (proxy.upstreams.ResponseSink)

    def on_response_head(self, status: int, reason: bytes, headers: list[tuple[bytes, bytes]]) -> None:
        if 100 <= status < 200 and status != 101:
            if self.http11 and not self.response_started:
                self.client.out.append(
                    protocol.response_head(status, reason, headers, request_id=self.request_id, framing=b"")
                )
            return
        if status in (502, 503) and self._may_retry():
            self.error = f"{self.backend.url if self.backend else 'backend'} answered {status}"
            self._drop_conn()
            self._release(failed=True)
            self._retry()
            return
        self.status = status
        has_length, has_chunked, upgrade_value = protocol.note_response_headers(headers)
        if status == 101:
            mode = TUNNELED
        elif self.method == b"HEAD" or status in (204, 304):
            mode = NO_BODY
        elif has_length and not has_chunked:
            mode = LENGTH
        else:
            self.until_close = not has_chunked
            mode = CHUNKED if self.http11 else UNTIL_CLOSE
        self.mode = mode
        keep = self.keep_alive and mode != UNTIL_CLOSE and not self.worker.draining
        self.keep_client = keep
        if mode == TUNNELED:
            framing = b"connection: upgrade\r\nupgrade: " + upgrade_value + b"\r\n"
        else:
            framing = b"transfer-encoding: chunked\r\n" if mode == CHUNKED else b""
            if not keep:
                framing += b"connection: close\r\n"
            elif not self.http11:
                framing += b"connection: keep-alive\r\n"
        self.client.out.append(
            protocol.response_head(status, reason, headers, request_id=self.request_id, framing=framing)
        )
        self.response_started = True

    def on_response_body(self, data: bytes) -> None:
        if self.mode == CHUNKED:
            if data:
                self.client.out.extend((protocol.chunk_head(len(data)), data, protocol.CRLF))
        else:
            self.client.out.append(data)
        self.bytes_out += len(data)

    def on_response_complete(self, keep_alive: bool) -> None:
        if self.mode == CHUNKED:
            self.client.out.append(protocol.LAST_CHUNK)
        conn, self.conn = self.conn, None
        if conn is not None:
            if keep_alive and self.request_done and conn.backend is self.backend:
                conn.backend.release(conn, monotonic(), self.worker.settings.upstream_keepalive)
            else:
                conn.close()
        self.finish()

    def on_upstream_upgraded(self, rest: bytes) -> None:
        client = self.client
        conn = self.conn
        if self.status != 101 or conn is None:
            self.upstream_failed("the backend switched protocols without 101", count=True)
            return
        if rest:
            client.out.append(rest)
        client.tunnel = conn
        client.upgrading = None
        conn.out.extend(self.held)
        self.held = []
        client.resume(PAUSE_PENDING)
        client.set_deadline(TUNNEL, self.worker.settings.idle_timeout)

    def on_tunnel_data(self, data: bytes) -> None:
        self.client.out.append(data)
        self.bytes_out += len(data)
        self.client.set_deadline(TUNNEL, self.worker.settings.idle_timeout)

    def on_upstream_lost(self, connection: UpstreamConnection, exc: Exception | None) -> None:
        if connection is not self.conn:
            return
        self.conn = None
        if self.mode == TUNNELED and self.response_started:
            self.client.close()
            self.finish()
        elif self.response_started and self.until_close:
            # The body was delimited by the end of the connection: this is its end.
            if self.mode == CHUNKED:
                self.client.out.append(protocol.LAST_CHUNK)
            self.finish()
        else:
            # A pooled connection the backend had closed while idle is no sign of a sick backend.
            stale = connection.requests > 1 and connection.received == 0
            reason = f"{connection.backend.url} closed the connection" + (f" ({exc})" if exc else "")
            self.upstream_failed(reason, count=not stale)

    def on_upstream_invalid(self, connection: UpstreamConnection, reason: str) -> None:
        if connection is self.conn:
            self.conn = None
            self.upstream_failed(reason, count=True)

    def on_upstream_writable(self, writable: bool) -> None:
        if writable:
            self.client.resume(PAUSE_UPSTREAM)
        else:
            self.client.pause(PAUSE_UPSTREAM)

    def flush(self) -> None:
        self.client.flush()
        if self.conn is not None:
            self.conn.flush()

    # -- failures, retries, the end

    def upstream_failed(self, reason: str, *, count: bool, timeout: bool = False) -> None:
        self.error = reason
        self._drop_conn()
        self._release(failed=True if count else None)
        if self.response_started:
            self.client.abort()
            self.finish()
        elif not timeout and self._may_retry():
            self._retry()
        elif timeout:
            self.respond_error(504, "upstream_timeout", "The backend did not answer in time.")
        else:
            self.respond_error(502, "bad_gateway", f"The backend failed: {reason}.")

    def on_timeout(self) -> None:
        if not self.request_done and not self.response_started:
            self.error = "the client did not send its request in time"
            self.keep_client = False
            self.respond_error(408, "request_timeout", "The request did not arrive in time.")
        else:
            self.upstream_failed("no complete response within the request timeout", count=True, timeout=True)

    def fail(self, refusal: Refusal) -> None:
        """The request turned out bad while in flight (bad chunk, body too large)."""
        self.error = refusal.detail
        self.keep_alive = False
        self.respond_error(refusal.status, refusal.code, refusal.detail)

    def abandon(self) -> None:
        """The client went away."""
        if self.done:
            return
        if not (self.mode == TUNNELED and self.response_started):
            self.error = self.error or "the client closed the connection"
            self.status = self.status or 499
        self._drop_conn()
        self._release(failed=None)
        self.finish()

    def respond_error(self, status: int, code: str, detail: str) -> None:
        self._drop_conn()
        self._release(failed=None)
        if self.response_started:
            self.client.abort()
            self.finish()
            return
        keep = self.keep_alive and self.request_done and not self.worker.draining
        self.status = status
        self.keep_client = keep
        self.response_started = True
        self.client.out.append(
            protocol.error_response(status, code, detail, request_id=self.request_id, close=not keep)
        )
        self.finish()

    def _may_retry(self) -> bool:
        upstream = self.upstream
        return (
            self.retryable
            and not self.response_started
            and upstream is not None
            and len(self.tried) <= upstream.settings.retries
            and upstream.retry_budget.try_retry(monotonic())
        )

    def _retry(self) -> None:
        assert self.upstream is not None
        self.worker.metrics.retried(self.upstream.name)
        self.dispatch()

    def _drop_conn(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            conn.close()

    def _release(self, *, failed: bool | None) -> None:
        """Stop counting this request on its backend; `failed` None means no verdict on the backend."""
        backend = self.backend
        if not self.holding or backend is None:
            return
        self.holding = False
        backend.active -= 1
        if failed is None:
            backend.breaker.on_abandon()
        else:
            assert self.upstream is not None
            now = monotonic()
            self.upstream.record(backend, now, failed=failed, latency=now - self.dispatched_at)

    def finish(self) -> None:
        if self.done:
            return
        self.done = True
        self._release(failed=self.status >= 500)
        worker = self.worker
        upstream = self.upstream.name if self.upstream is not None else ""
        backend = self.backend.url if self.backend is not None else ""
        duration = monotonic() - self.started
        worker.metrics.observe(upstream, backend, self.status, duration)
        access_log = worker.access_log
        if access_log.enabled:
            access_log.write(
                method=self.method.decode("latin-1"),
                path=self.target[:2048].decode("latin-1"),
                status=self.status,
                duration=duration,
                upstream=upstream,
                backend=backend,
                attempts=len(self.tried),
                sent=self.bytes_out,
                client=self.client.client_ip.decode(),
                request_id=self.request_id.decode("latin-1"),
                error=self.error,
            )
        self.client.exchange_finished(self, self.keep_client and self.request_done)


class Worker:
    """The proxy in one process: listener, upstreams and routes, health checks, reload, drain."""

    def __init__(self, settings: ProxySettings, flags: ProxyFlags, index: int = 0) -> None:
        self.settings = settings
        self.flags = flags
        self.index = index
        self.metrics = Metrics()
        self.access_log = AccessLog(enabled=settings.access_log)
        self.request_ids = protocol.RequestIds()
        self.connections: set[ClientConnection] = set()
        self.draining = False
        self.upstreams: dict[str, Upstream] = {}
        self.router = Router([])
        self._checks: list[asyncio.Task[None]] = []
        self._server: asyncio.Server | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self.apply(settings)

    def apply(self, settings: ProxySettings) -> None:
        """Use `settings`: backends that stay keep their state and pooled connections."""
        previous = {
            (backend.upstream_name, backend.url): backend for up in self.upstreams.values() for backend in up.backends
        }
        upstreams: dict[str, Upstream] = {}
        for upstream_settings in settings.upstreams:
            backends = []
            for backend_settings in upstream_settings.backends:
                backend = previous.pop((upstream_settings.name, backend_settings.url), None)
                if backend is None:
                    backend = Backend(backend_settings, upstream_settings, monotonic)
                else:
                    backend.update(backend_settings, upstream_settings)
                backends.append(backend)
            upstreams[upstream_settings.name] = Upstream(upstream_settings, backends, settings.retry_budget_ratio)
        for backend in previous.values():
            backend.removed = True
            backend.close_idle()
        self.upstreams = upstreams
        self.router = Router([Route(route.upstream, route.host, route.path_prefix) for route in settings.routes])
        self.settings = settings
        self.access_log.enabled = settings.access_log
        if self._server is not None:
            self._start_checks()

    def _start_checks(self) -> None:
        for task in self._checks:
            task.cancel()
        loop = asyncio.get_running_loop()
        self._checks = [
            loop.create_task(check_forever(upstream))
            for upstream in self.upstreams.values()
            if upstream.settings.health_check.enabled
        ]

    async def serve(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: ClientConnection(self), sock=sock, backlog=LISTEN_BACKLOG)
        self._start_checks()
        self._sweeper = loop.create_task(self._sweep())

    def reload(self) -> bool:
        """Re-read the configuration (SIGHUP); a bad one is refused and the running one kept."""
        try:
            settings = load_settings(self.flags)
        except Exception as exc:
            logger.error("configuration refused, keeping the running one: %s", exc, extra={"action": "reload_refused"})
            return False
        if settings.listen != self.settings.listen or settings.workers != self.settings.workers:
            logger.warning("listen address and worker count change only at a restart", extra={"action": "reload"})
            settings = _keep_listen(settings, self.settings)
        self.apply(settings)
        logger.info(
            "configuration reloaded: %d upstreams, %d routes",
            len(settings.upstreams),
            len(settings.routes),
            extra={"action": "reloaded", "worker": self.index},
        )
        return True

    async def drain(self) -> None:
        """Stop accepting, let requests in flight finish (within drain_timeout), then close all."""
        self.draining = True
        if self._server is not None:
            self._server.close()
        for connection in list(self.connections):
            if connection.current is None and connection.tunnel is None and not connection._in_head:
                connection.close()
        deadline = monotonic() + self.settings.drain_timeout
        while self.connections and monotonic() < deadline:
            await asyncio.sleep(0.05)
        for connection in list(self.connections):
            connection.abort()
        for task in [*self._checks, *([self._sweeper] if self._sweeper else [])]:
            task.cancel()
        for upstream in self.upstreams.values():
            for backend in upstream.backends:
                backend.close_idle()
        self.access_log.flush()

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_SECONDS)
            now = monotonic()
            for connection in list(self.connections):
                if now >= connection.deadline:
                    connection.on_deadline()
            stale_before = now - self.settings.upstream_keepalive_timeout
            for upstream in self.upstreams.values():
                for backend in upstream.backends:
                    if backend.idle:
                        backend.close_idle(older_than=stale_before)
            self.access_log.flush()

    def count_refusal(self, client: ClientConnection, refusal: Refusal) -> None:
        """A request refused before it became an exchange: count it and log it."""
        self.metrics.observe("", "", refusal.status, 0.0)
        self.access_log.write(
            method="-",
            path="-",
            status=refusal.status,
            duration=0.0,
            upstream="",
            backend="",
            attempts=0,
            sent=0,
            client=client.client_ip.decode(),
            request_id="-",
            error=refusal.detail,
        )

    def snapshot(self) -> dict[str, Any]:
        now = monotonic()
        return {
            "pid": os.getpid(),
            "index": self.index,
            "draining": self.draining,
            "connections": len(self.connections),
            "upstreams": [upstream.status(now) for upstream in self.upstreams.values()],
            "routes": [
                {"host": route.host, "path_prefix": route.path_prefix, "upstream": route.upstream}
                for route in self.settings.routes
            ],
            "metrics": self.metrics.snapshot(),
        }


def _keep_listen(settings: ProxySettings, running: ProxySettings) -> ProxySettings:
    fields = dict(settings.__dict__)
    fields.update(listen=running.listen, workers=running.workers, metrics_listen=running.metrics_listen)
    return ProxySettings(**fields)


def close_quietly(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.close()
