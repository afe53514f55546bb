"""TCP between Raft nodes: authenticated connections, length-prefixed frames, bounded queues, requests.

Each node listens on its Raft address and dials every peer it has to talk to; a node's messages
to a peer travel on the connection it dialed (so a one-way partition cuts one direction only),
and answers to its requests come back on that same connection.

Frames: a 5-byte header (u32 big-endian payload length, u8 frame type) and a payload. A MESSAGE
payload is a Raft message as raft.core's codec encodes it (msgpack); REQUEST and RESPONSE
payloads are msgpack lists. Before a connection is authenticated, frames are limited to
HANDSHAKE_MAX_BYTES; after, to `max_frame_bytes`. A frame over the limit, a frame that does not
decode, or a message claiming another sender closes the connection.

Authentication (the secret never crosses the wire): the listener sends HELLO with a fresh random
nonce; the dialer answers AUTH with its node id, its own nonce and an HMAC-SHA256, under the
cluster secret, of both nonces and both node ids; the listener checks it and answers WELCOME with
its own HMAC over the nonces in the other order, which the dialer checks. A stranger without the
secret can neither complete a connection nor replay one (the nonces are fresh), and so cannot
join or inject messages. Both sides also compare cluster ids when both know one. TLS (mutual,
from cert/key/CA files) is optional and wraps the same exchange; without it, traffic is readable
by anyone on the path, and an on-path attacker could tamper with an established connection.

Sending never blocks the node: `send()` queues the frame for its peer and returns; frames wait
only while the peer is not connected or its socket buffer is over the high-water mark, in a queue
bounded in frames and bytes; beyond that they are dropped (Raft retransmits). Heartbeats, votes
and other small control messages go in a separate queue written first. A link that cannot
connect retries with exponential backoff and jitter, and drops what was queued meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import os
import random
import socket
import ssl
import struct
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, cast

import msgpack

from raft.core import CodecError, Message, MessageType, RaftError, decode_message, encode_message

logger = logging.getLogger(__name__)

PROTOCOL_VERSION = 1
HEADER = struct.Struct(">IB")
HANDSHAKE_MAX_BYTES = 1024
NONCE_BYTES = 32
MIB = 1024 * 1024

F_HELLO = 1
F_AUTH = 2
F_WELCOME = 3
F_REJECT = 4
F_MESSAGE = 10
F_REQUEST = 11
F_RESPONSE = 12

# Small messages that keep a cluster alive; they jump the queue of a slow link.
URGENT_TYPES = frozenset(
    {
        MessageType.HEARTBEAT,
        MessageType.HEARTBEAT_RESP,
        MessageType.VOTE,
        MessageType.VOTE_RESP,
        MessageType.PRE_VOTE,
        MessageType.PRE_VOTE_RESP,
        MessageType.TIMEOUT_NOW,
        MessageType.READ_INDEX,
        MessageType.READ_INDEX_RESP,
    }
)

Address = tuple[str, int]
MessageHandler = Callable[[Message], None]
RequestHandler = Callable[[int, str, bytes], Awaitable[bytes]]
AddressHandler = Callable[[int, Address], None]


class TransportError(Exception):
    """Base of the transport's errors."""


class HandshakeFailed(TransportError):
    """The other side did not prove it knows the cluster secret, or belongs to another cluster."""


class PeerUnavailable(TransportError):
    """The request was not sent: no connection to that peer, or its queue is full. Nothing happened."""


class OutcomeUnknown(TransportError):
    """The request was sent but no answer came (timeout, connection lost): it may have taken effect."""


class RemoteError(TransportError):
    """The peer answered the request with an error: `code` is machine-readable, str() is for people."""

    def __init__(self, code: str, message: str, detail: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.detail = detail


def _pack(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)  # type: ignore[no-any-return]


def _unpack_list(payload: bytes, length: int, what: str) -> list[Any]:
    try:
        value = msgpack.unpackb(payload, raw=False, strict_map_key=True)
    except Exception as exc:  # msgpack raises several unrelated types on bad input
        raise CodecError(f"{what}: not valid msgpack ({exc.__class__.__name__})") from None
    if type(value) is not list or len(value) != length:
        raise CodecError(f"{what}: expected a list of {length} items")
    return value


def frame(kind: int, payload: bytes) -> bytes:
    return HEADER.pack(len(payload), kind) + payload


def _mac(secret: bytes, label: bytes, first: bytes, second: bytes, ids: tuple[int, int], cluster: str) -> bytes:
    body = b"helios-raft-v1|" + label + b"|" + first + second + _pack([ids[0], ids[1], cluster])
    return hmac.new(secret, body, hashlib.sha256).digest()


def tls_contexts(cert_file: str, key_file: str, ca_file: str) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(server, client) contexts for mutual TLS: each side shows a certificate signed by the CA.

    Peers are addressed by IP, so host names are not checked; a certificate from the CA is what
    identifies a cluster member (on top of the cluster secret).
    """
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.minimum_version = ssl.TLSVersion.TLSv1_2
    server.load_cert_chain(cert_file, key_file)
    server.load_verify_locations(ca_file)
    server.verify_mode = ssl.CERT_REQUIRED
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.minimum_version = ssl.TLSVersion.TLSv1_2
    client.load_cert_chain(cert_file, key_file)
    client.load_verify_locations(ca_file)
    client.check_hostname = False
    client.verify_mode = ssl.CERT_REQUIRED
    return server, client


@dataclass(frozen=True, slots=True)
class TransportConfig:
    """How a node's transport behaves. `secret` is the shared cluster secret (at least 16 bytes)."""

    node_id: int
    listen: Address
    secret: bytes
    advertise: Address | None = None  # the address peers should use for this node (default: listen)
    server_ssl: ssl.SSLContext | None = None
    client_ssl: ssl.SSLContext | None = None
    max_frame_bytes: int = 64 * MIB
    queue_frames: int = 4096  # per peer, both queues together
    queue_bytes: int = 64 * MIB
    write_high_water: int = 1 * MIB  # above this much unsent data in the socket buffer, frames queue
    connect_timeout: float = 2.0
    handshake_timeout: float = 2.0
    backoff_min: float = 0.05
    backoff_max: float = 1.0
    max_requests_per_connection: int = 1024

    def validate(self) -> None:
        if self.node_id <= 0:
            raise ValueError(f"node id must be positive, got {self.node_id}")
        if len(self.secret) < 16:
            raise ValueError("the cluster secret must be at least 16 bytes")
        if self.max_frame_bytes < 64 * 1024:
            raise ValueError("max_frame_bytes must be at least 64 KiB")


@dataclass
class PeerStats:
    """What a link to one peer has done, for status reports."""

    address: Address
    connected: bool = False
    sent: int = 0
    dropped: int = 0
    reconnects: int = 0
    queued: int = 0
    last_error: str = ""


# --- frame parsing shared by both ends ---------------------------------------------------------


class _FrameProtocol(asyncio.Protocol):
    """Buffers bytes, cuts frames, enforces size limits; subclasses handle each frame."""

    def __init__(self, transport_owner: Transport) -> None:
        self.owner = transport_owner
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.limit = HANDSHAKE_MAX_BYTES
        self.peer_id = 0
        self.authenticated = False
        self.closed = asyncio.get_running_loop().create_future()
        self.paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop's transports are not subclasses
        self.transport = transport
        transport.set_write_buffer_limits(high=self.owner.config.write_high_water)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        buf = self.buffer
        buf += data
        pos = 0
        end = len(buf)
        try:
            while end - pos >= HEADER.size:
                length, kind = HEADER.unpack_from(buf, pos)
                if length > self.limit:
                    self.abort(f"frame of {length} bytes exceeds the limit of {self.limit}")
                    return
                start = pos + HEADER.size
                if end - start < length:
                    break
                payload = bytes(buf[start : start + length])
                pos = start + length
                self.handle_frame(kind, payload)
                if self.transport is None or self.transport.is_closing():
                    return
        finally:
            if pos:
                del buf[:pos]

    def handle_frame(self, kind: int, payload: bytes) -> None:
        raise NotImplementedError

    def send_frame(self, kind: int, payload: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(frame(kind, payload))

    def reject(self, reason: str) -> None:
        self.send_frame(F_REJECT, _pack([reason]))
        self.close(reason)

    def abort(self, reason: str) -> None:
        logger.warning(
            "closing raft connection (peer %s): %s", self.peer_id or "?", reason, extra={"action": "raft_conn_abort"}
        )
        if self.transport is not None:
            self.transport.abort()

    def close(self, reason: str = "") -> None:
        if reason:
            logger.info("closing raft connection (peer %s): %s", self.peer_id or "?", reason)
        if self.transport is not None:
            self.transport.close()

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if not self.closed.done():
            self.closed.set_result(None)


class _Inbound(_FrameProtocol):
    """A connection a peer dialed to us: it sends messages and requests, we answer requests."""

    def __init__(self, owner: Transport) -> None:
        super().__init__(owner)
        self.nonce = os.urandom(NONCE_BYTES)
        self.tasks: set[asyncio.Task[None]] = set()
        self.handshake_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        owner = self.owner
        owner._inbound.add(self)
        self.send_frame(F_HELLO, _pack([PROTOCOL_VERSION, self.nonce, owner.config.node_id, owner.cluster_id]))
        self.handshake_timer = asyncio.get_running_loop().call_later(
            owner.config.handshake_timeout, self._handshake_expired
        )

    def _handshake_expired(self) -> None:
        if not self.authenticated:
            self.abort("no authentication within the handshake timeout")

    def handle_frame(self, kind: int, payload: bytes) -> None:
        owner = self.owner
        if not self.authenticated:
            if kind != F_AUTH:
                self.abort(f"expected AUTH, got frame type {kind}")
                return
            try:
                version, peer_id, nonce, mac, cluster, advertise = _unpack_list(payload, 6, "AUTH")
                if (
                    type(peer_id) is not int
                    or peer_id <= 0
                    or type(nonce) is not bytes
                    or len(nonce) != NONCE_BYTES
                    or type(mac) is not bytes
                    or type(cluster) is not str
                ):
                    raise CodecError("AUTH: malformed fields")
            except CodecError as exc:
                self.abort(str(exc))
                return
            if version != PROTOCOL_VERSION:
                self.reject(f"protocol version {version} is not {PROTOCOL_VERSION}")
                return
            me = owner.config.node_id
            expected = _mac(owner.config.secret, b"client", self.nonce, nonce, (peer_id, me), cluster)
            if not hmac.compare_digest(expected, mac):
                owner.auth_failures += 1
                self.reject("authentication failed")
                return
            if peer_id == me:
                self.reject("a node cannot connect to itself")
                return
            if cluster and owner.cluster_id and cluster != owner.cluster_id:
                self.reject(f"cluster id mismatch: this node belongs to {owner.cluster_id}, the peer to {cluster}")
                return
            self.peer_id = peer_id
            self.authenticated = True
            self.limit = owner.config.max_frame_bytes
            if self.handshake_timer is not None:
                self.handshake_timer.cancel()
            reply = _mac(owner.config.secret, b"server", nonce, self.nonce, (me, peer_id), owner.cluster_id)
            self.send_frame(F_WELCOME, _pack([reply, owner.cluster_id]))
            owner._touch(peer_id)
            if (
                type(advertise) is list
                and len(advertise) == 2
                and type(advertise[0]) is str
                and type(advertise[1]) is int
                and owner.on_address is not None
            ):
                owner.on_address(peer_id, (advertise[0], advertise[1]))
            return
        owner._touch(self.peer_id)
        if kind == F_MESSAGE:
            try:
                message = decode_message(payload)
            except CodecError as exc:
                self.abort(f"undecodable message: {exc}")
                return
            if message.src != self.peer_id:
                self.abort(f"message claims to come from {message.src} on a connection from {self.peer_id}")
                return
            owner.received += 1
            owner._deliver(message, self)
        elif kind == F_REQUEST:
            self._request(payload)
        else:
            self.abort(f"unexpected frame type {kind}")

    def _request(self, payload: bytes) -> None:
        try:
            request_id, method, body = _unpack_list(payload, 3, "REQUEST")
            if type(request_id) is not int or type(method) is not str or type(body) is not bytes:
                raise CodecError("REQUEST: malformed fields")
        except CodecError as exc:
            self.abort(str(exc))
            return
        if len(self.tasks) >= self.owner.config.max_requests_per_connection:
            self.send_frame(F_RESPONSE, _pack([request_id, False, ["busy", "too many requests in flight", None]]))
            return
        task = asyncio.get_running_loop().create_task(self._serve(request_id, method, body))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _serve(self, request_id: int, method: str, body: bytes) -> None:
        handler = self.owner.on_request
        try:
            if handler is None:
                raise RemoteError("no_handler", "this node does not take requests")
            result = await handler(self.peer_id, method, body)
            reply = _pack([request_id, True, result])
        except RemoteError as exc:
            reply = _pack([request_id, False, [exc.code, str(exc), exc.detail]])
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            logger.exception("raft request %s from %s failed", method, self.peer_id)
            reply = _pack([request_id, False, ["internal", f"{exc.__class__.__name__}: {exc}", None]])
        self.send_frame(F_RESPONSE, reply)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if self.handshake_timer is not None:
            self.handshake_timer.cancel()
        for task in list(self.tasks):
            task.cancel()
        self.owner._inbound.discard(self)


class _Outbound(_FrameProtocol):
    """A connection we dialed: we send messages and requests, the peer answers requests."""

    def __init__(self, owner: Transport, expected_peer: int) -> None:
        super().__init__(owner)
        self.expected_peer = expected_peer  # 0 when dialing an address whose node we do not know
        self.nonce = os.urandom(NONCE_BYTES)
        self.server_nonce = b""
        self.ready = asyncio.get_running_loop().create_future()
        self.calls: dict[int, asyncio.Future[bytes]] = {}
        self.link: _PeerLink | None = None
        self.peer_cluster = ""

    def handle_frame(self, kind: int, payload: bytes) -> None:
        if kind == F_REJECT:
            try:
                (reason,) = _unpack_list(payload, 1, "REJECT")
            except CodecError:
                reason = "rejected"
            self._fail_handshake(HandshakeFailed(f"the peer refused the connection: {reason}"))
        elif self.authenticated:
            self.owner._touch(self.peer_id)
            if kind == F_RESPONSE:
                self._response(payload)
            else:
                self.abort(f"unexpected frame type {kind} from the listener")
        elif kind == F_HELLO and not self.server_nonce:
            self._hello(payload)
        elif kind == F_WELCOME and self.server_nonce:
            self._welcome(payload)
        else:
            self._fail_handshake(HandshakeFailed(f"unexpected frame type {kind} during the handshake"))

    def _hello(self, payload: bytes) -> None:
        owner = self.owner
        try:
            version, nonce, peer_id, cluster = _unpack_list(payload, 4, "HELLO")
            if type(nonce) is not bytes or len(nonce) != NONCE_BYTES or type(peer_id) is not int:
                raise CodecError("HELLO: malformed fields")
            if type(cluster) is not str:
                raise CodecError("HELLO: malformed cluster id")
        except CodecError as exc:
            self._fail_handshake(HandshakeFailed(str(exc)))
            return
        if version != PROTOCOL_VERSION:
            self._fail_handshake(HandshakeFailed(f"peer speaks protocol {version}"))
            return
        if self.expected_peer and peer_id != self.expected_peer:
            self._fail_handshake(HandshakeFailed(f"expected node {self.expected_peer}, found node {peer_id}"))
            return
        self.server_nonce = nonce
        self.peer_id = peer_id
        self.peer_cluster = cluster
        me = owner.config.node_id
        mac = _mac(owner.config.secret, b"client", nonce, self.nonce, (me, peer_id), owner.cluster_id)
        advertise = owner.config.advertise or owner.config.listen
        self.send_frame(
            F_AUTH, _pack([PROTOCOL_VERSION, me, self.nonce, mac, owner.cluster_id, [advertise[0], advertise[1]]])
        )

    def _welcome(self, payload: bytes) -> None:
        owner = self.owner
        try:
            mac, cluster = _unpack_list(payload, 2, "WELCOME")
        except CodecError as exc:
            self._fail_handshake(HandshakeFailed(str(exc)))
            return
        me = owner.config.node_id
        expected = _mac(owner.config.secret, b"server", self.nonce, self.server_nonce, (self.peer_id, me), str(cluster))
        if type(mac) is not bytes or not hmac.compare_digest(expected, mac):
            self._fail_handshake(HandshakeFailed("the peer does not know the cluster secret"))
            return
        self.peer_cluster = str(cluster)
        self.authenticated = True
        self.limit = owner.config.max_frame_bytes
        if not self.ready.done():
            self.ready.set_result(None)

    def _response(self, payload: bytes) -> None:
        try:
            request_id, ok, result = _unpack_list(payload, 3, "RESPONSE")
        except CodecError as exc:
            self.abort(str(exc))
            return
        future = self.calls.pop(request_id, None) if type(request_id) is int else None
        if future is None or future.done():
            return
        if ok is True and type(result) is bytes:
            future.set_result(result)
        elif type(result) is list and len(result) == 3:
            future.set_exception(RemoteError(str(result[0]), str(result[1]), result[2]))
        else:
            future.set_exception(OutcomeUnknown("malformed response"))

    def _fail_handshake(self, exc: HandshakeFailed) -> None:
        if not self.ready.done():
            self.ready.set_exception(exc)
        self.close()

    def resume_writing(self) -> None:
        super().resume_writing()
        if self.link is not None:
            self.link.flush()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if not self.ready.done():
            self.ready.set_exception(TransportError(f"connection lost during the handshake: {exc or 'closed'}"))
        for future in self.calls.values():
            if not future.done():
                future.set_exception(OutcomeUnknown("connection lost before the answer"))
        self.calls.clear()
        if self.link is not None:
            self.link.connection_down()


# --- one outgoing link per peer ----------------------------------------------------------------


class _PeerLink:
    """The connection this node dials to one peer, its queues and its reconnect loop."""

    def __init__(self, owner: Transport, peer_id: int, address: Address) -> None:
        self.owner = owner
        self.peer_id = peer_id
        self.stats = PeerStats(address)
        self.urgent: deque[bytes] = deque()
        self.bulk: deque[bytes] = deque()
        self.queued_bytes = 0
        self.conn: _Outbound | None = None
        self.connected = asyncio.Event()
        self.flush_scheduled = False
        self.next_request = 1
        self.task = asyncio.get_running_loop().create_task(self._run())

    @property
    def address(self) -> Address:
        return self.stats.address

    def enqueue(self, data: bytes, *, urgent: bool) -> bool:
        config = self.owner.config
        if (
            len(self.urgent) + len(self.bulk) >= config.queue_frames
            or self.queued_bytes + len(data) > config.queue_bytes
        ):
            self.stats.dropped += 1
            return False
        (self.urgent if urgent else self.bulk).append(data)
        self.queued_bytes += len(data)
        if not self.flush_scheduled and self.conn is not None:
            self.flush_scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)
        return True

    def flush(self) -> None:
        """Write what is queued: all urgent frames, then bulk ones while the socket buffer has room."""
        self.flush_scheduled = False
        conn = self.conn
        if conn is None or conn.transport is None or conn.transport.is_closing():
            return
        chunks: list[bytes] = []
        written = 0
        while self.urgent:
            data = self.urgent.popleft()
            chunks.append(data)
            written += len(data)
        if not conn.paused:
            budget = self.owner.config.write_high_water
            while self.bulk and (written < budget or not chunks):
                data = self.bulk.popleft()
                chunks.append(data)
                written += len(data)
        if chunks:
            self.queued_bytes -= written
            self.stats.sent += len(chunks)
            conn.transport.write(b"".join(chunks))
        if self.bulk and not conn.paused and not self.flush_scheduled:
            self.flush_scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)

    def drop_queue(self) -> None:
        self.stats.dropped += len(self.urgent) + len(self.bulk)
        self.urgent.clear()
        self.bulk.clear()
        self.queued_bytes = 0

    def connection_down(self) -> None:
        self.conn = None
        self.connected.clear()
        self.stats.connected = False

    async def _run(self) -> None:
        backoff = self.owner.config.backoff_min
        while True:
            try:
                conn = await self.owner._dial(self.address, self.peer_id)
            except asyncio.CancelledError:
                raise
            except (OSError, TransportError, TimeoutError) as exc:
                self.stats.last_error = f"{exc.__class__.__name__}: {exc}"
                self.drop_queue()  # stale by the time a connection exists
                await asyncio.sleep(backoff * (0.5 + random.random()))
                backoff = min(backoff * 2, self.owner.config.backoff_max)
                continue
            backoff = self.owner.config.backoff_min
            self.stats.reconnects += 1
            conn.link = self
            self.conn = conn
            self.stats.connected = True
            self.stats.last_error = ""
            self.connected.set()
            self.flush()
            try:
                await conn.closed
            finally:
                self.connection_down()
                conn.close()
            self.stats.last_error = "connection closed"
            await asyncio.sleep(backoff * (0.5 + random.random()))

    async def call(self, method: str, body: bytes, timeout: float) -> bytes:
        deadline = time.monotonic() + timeout
        if self.conn is None:
            try:
                await asyncio.wait_for(self.connected.wait(), timeout)
            except TimeoutError:
                raise PeerUnavailable(f"no connection to node {self.peer_id} ({self.stats.last_error})") from None
        conn = self.conn
        if conn is None:
            raise PeerUnavailable(f"no connection to node {self.peer_id}")
        request_id = self.next_request
        self.next_request += 1
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        if not self.enqueue(frame(F_REQUEST, _pack([request_id, method, body])), urgent=False):
            raise PeerUnavailable(f"the queue to node {self.peer_id} is full")
        conn.calls[request_id] = future
        try:
            return await asyncio.wait_for(future, max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            raise OutcomeUnknown(f"no answer from node {self.peer_id} within {timeout:.1f}s") from None
        finally:
            conn.calls.pop(request_id, None)

    async def close(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
        if self.conn is not None:
            self.conn.close()
        self.drop_queue()


def _consume(future: asyncio.Future[None]) -> None:
    """Mark a handshake future's exception as seen (the dialer may have given up waiting)."""
    if not future.cancelled():
        future.exception()


# --- the transport -----------------------------------------------------------------------------


class Transport:
    """A node's connections to its peers. Create, `await start()`, then `send()` and `call()`.

    `on_message` gets every authenticated Raft message (it may raise RaftError, e.g. InvalidMessage,
    to have the connection closed); `on_request(peer, method, body)` answers requests (raise
    RemoteError to refuse one); `on_address(peer, address)` hears the address a peer advertises.
    `cluster_id` may be set later (a joining node learns it); connections compare it when both know it.
    """

    def __init__(
        self,
        config: TransportConfig,
        *,
        on_message: MessageHandler,
        on_request: RequestHandler | None = None,
        on_address: AddressHandler | None = None,
        cluster_id: str = "",
    ) -> None:
        config.validate()
        self.config = config
        self.on_message = on_message
        self.on_request = on_request
        self.on_address = on_address
        self.cluster_id = cluster_id
        self.auth_failures = 0
        self.received = 0
        self._links: dict[int, _PeerLink] = {}
        self._inbound: set[_Inbound] = set()
        self._server: asyncio.Server | None = None
        self._last_contact: dict[int, float] = {}
        self._closing: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Listen on the configured address (port 0 picks a free one: see `address`)."""
        loop = asyncio.get_running_loop()
        host, port = self.config.listen
        self._server = await loop.create_server(
            lambda: _Inbound(self), host, port, ssl=self.config.server_ssl, reuse_address=True, backlog=128
        )

    @property
    def address(self) -> Address:
        assert self._server is not None, "start() first"
        host, port = self._server.sockets[0].getsockname()[:2]
        return str(host), int(port)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for link in list(self._links.values()):
            await link.close()
        self._links.clear()
        for closing in list(self._closing):
            with contextlib.suppress(Exception):
                await closing
        for conn in list(self._inbound):
            conn.close()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)
            self._server = None

    # --- peers ---------------------------------------------------------------------------------

    def set_peers(self, peers: dict[int, Address]) -> None:
        """Make the set of peers this node dials exactly `peers` (id -> address)."""
        for peer_id in list(self._links):
            if peer_id not in peers or self._links[peer_id].address != peers[peer_id]:
                link = self._links.pop(peer_id)
                closing = asyncio.get_running_loop().create_task(link.close())
                self._closing.add(closing)
                closing.add_done_callback(self._closing.discard)
        for peer_id, address in peers.items():
            if peer_id != self.config.node_id and peer_id not in self._links:
                self._links[peer_id] = _PeerLink(self, peer_id, address)

    def peers(self) -> dict[int, PeerStats]:
        for link in self._links.values():
            link.stats.queued = len(link.urgent) + len(link.bulk)
        return {peer_id: link.stats for peer_id, link in self._links.items()}

    def last_contact(self, peer_id: int) -> float | None:
        """time.monotonic() of the last frame received from that peer on any connection, or None."""
        return self._last_contact.get(peer_id)

    def _touch(self, peer_id: int) -> None:
        self._last_contact[peer_id] = time.monotonic()

    def _deliver(self, message: Message, conn: _Inbound) -> None:
        try:
            self.on_message(message)
        except RaftError as exc:
            conn.abort(f"invalid message: {exc}")

    # --- sending -------------------------------------------------------------------------------

    def send(self, message: Message) -> bool:
        """Queue a message for its destination; False when it was dropped (unknown peer, queue full)."""
        link = self._links.get(message.dst)
        if link is None:
            return False
        return link.enqueue(frame(F_MESSAGE, encode_message(message)), urgent=message.type in URGENT_TYPES)

    def flush(self) -> None:
        """Write what send() queued now rather than at the next turn of the event loop (one write per peer)."""
        for link in self._links.values():
            if link.urgent or link.bulk:
                link.flush()

    async def call(self, peer_id: int, method: str, body: bytes, *, timeout: float) -> bytes:
        """Send a request to a peer and wait for its answer.

        Raises PeerUnavailable (not sent: nothing happened), OutcomeUnknown (sent, no answer) or
        RemoteError (the peer's handler refused it).
        """
        link = self._links.get(peer_id)
        if link is None:
            raise PeerUnavailable(f"node {peer_id} is not a known peer")
        return await link.call(method, body, timeout)

    async def call_address(self, address: Address, method: str, body: bytes, *, timeout: float) -> bytes:
        """A request on a one-off connection to an address whose node is not known yet (joining)."""
        conn = await asyncio.wait_for(self._dial(address, 0), timeout)
        try:
            future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
            conn.calls[1] = future
            conn.send_frame(F_REQUEST, _pack([1, method, body]))
            try:
                return await asyncio.wait_for(future, timeout)
            except TimeoutError:
                raise OutcomeUnknown(f"no answer from {address[0]}:{address[1]} within {timeout:.1f}s") from None
        finally:
            conn.close()

    async def _dial(self, address: Address, peer_id: int) -> _Outbound:
        loop = asyncio.get_running_loop()
        host, port = address
        ssl_context = self.config.client_ssl
        _, conn = await asyncio.wait_for(
            loop.create_connection(
                lambda: _Outbound(self, peer_id),
                host,
                port,
                ssl=ssl_context,
                server_hostname="" if ssl_context is not None else None,
            ),
            self.config.connect_timeout,
        )
        conn.ready.add_done_callback(_consume)
        try:
            await asyncio.wait_for(asyncio.shield(conn.ready), self.config.handshake_timeout)
        except BaseException:
            conn.abort("handshake did not complete")
            raise
        if conn.peer_cluster and self.cluster_id and conn.peer_cluster != self.cluster_id:
            conn.close()
            raise HandshakeFailed(
                f"cluster id mismatch: ours is {self.cluster_id}, node {conn.peer_id} is in {conn.peer_cluster}"
            )
        return conn
