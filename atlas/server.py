"""The ATLAS network server: asyncio.Protocol on uvloop. It moves bytes and owns connections;
commands run in atlas.commands.

Each read is parsed into frames and answered with one transport.write of all its replies
(pipelining costs one syscall per batch). Back-pressure: a client that does not read its replies
stops being read from (pause_reading above a high-water mark), so its replies cannot pile up; a
pub/sub subscriber whose backlog passes the output limit is disconnected. A blocked client (BLPOP
and friends) keeps being read from, so that a disconnect is noticed, but its further commands wait
in the parser until it is served or times out.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import signal
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, cast

from atlas.commands.session import NO_REPLY, NOT_READY, Blocked, ServerState, Session, build_table
from atlas.protocol import ProtocolError, RequestParser, encode, encode_error

logger = logging.getLogger(__name__)

OUTPUT_HIGH_WATER = 4 * 1024 * 1024
OUTPUT_LOW_WATER = 1024 * 1024
CRON_SECONDS = 0.1
BLOCKED_BACKLOG_LIMIT = 1024 * 1024  # bytes a blocked client may send before it is served


@dataclass(frozen=True)
class ListenAddress:
    host: str
    port: int


class ReplyGate(Protocol):
    """Holds replies until the changes they acknowledge are durable (atlas.persistence installs one):
    while `pending`, a batch of replies goes to hold() instead of the socket."""

    pending: bool

    def hold(self, transport: asyncio.Transport, data: bytes, replies: int, close: bool) -> None: ...


class ProtectedModeError(Exception):
    """Listening beyond loopback without a password, with protected mode on."""


def check_protected_mode(host: str, requirepass: str, protected_mode: bool) -> None:
    """Refuse to expose an unauthenticated server, as Redis's protected mode does."""
    if not protected_mode or requirepass:
        return
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback:
        raise ProtectedModeError(
            f"refusing to listen on {host} without a password: set --requirepass, "
            "or --protected-mode no to accept connections from anywhere"
        )


class Connection(asyncio.Protocol):
    """One client: bytes in, replies out."""

    def __init__(self, server: AtlasServer) -> None:
        self.server = server
        self.state = server.state
        self.transport: asyncio.Transport | None = None
        self.session: Session | None = None
        self.parser = RequestParser(server.state.protocol_limits)
        self.blocked: Blocked | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._batch: list[bytes] | None = None
        self._backlog = 0
        self._reading_paused = False
        self._output_full = False  # a batch stopped early because its replies filled the output

    # -- asyncio callbacks ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        state = self.state
        if len(state.sessions) >= state.config.maxclients:
            state.rejected_connections += 1
            transport.write(b"-ERR max number of clients reached\r\n")
            transport.close()
            return
        transport.set_write_buffer_limits(high=OUTPUT_HIGH_WATER, low=OUTPUT_LOW_WATER)
        peer = transport.get_extra_info("peername")
        local = transport.get_extra_info("sockname")
        session = state.new_session(_format_address(peer), _format_address(local))
        session.writer = self._send
        session.disconnect = self._disconnect
        self.session = session
        self.server.connections.add(self)

    def data_received(self, data: bytes) -> None:
        session = self.session
        if session is None or self.transport is None or self.transport.is_closing():
            return
        self.state.net_input_bytes += len(data)
        session.last_interaction = time.monotonic()
        try:
            self.parser.feed(data)
            if self.blocked is not None:
                self._backlog += len(data)
                if self._backlog > BLOCKED_BACKLOG_LIMIT:
                    raise ProtocolError("Protocol error: too much input while blocked")
                return
            self._process()
        except ProtocolError as error:
            self._protocol_error(str(error))

    def connection_lost(self, exc: Exception | None) -> None:
        self._unblock()
        self.server.connections.discard(self)
        if self.session is not None:
            self.session.close()

    def pause_writing(self) -> None:
        """The client is not reading its replies: stop reading its commands until it does."""
        if self.transport is not None and self.blocked is None:
            self.transport.pause_reading()
            self._reading_paused = True

    def resume_writing(self) -> None:
        if self.transport is not None and self._reading_paused:
            self._reading_paused = False
            self.transport.resume_reading()
            if self._output_full:
                self._resume_later()

    # -- processing -------------------------------------------------------------------------

    def _process(self) -> None:
        """Run every complete frame; answer them with one write."""
        session = self.session
        transport = self.transport
        assert session is not None
        assert transport is not None
        batch: list[bytes] = []
        self._batch = batch
        state = self.state
        size = 0
        self._output_full = False
        try:
            for frame in self.parser.frames():
                if not frame:
                    continue
                reply = session.execute(frame)
                if state.ready_keys:
                    self.server.serve_blocked()
                if reply is NO_REPLY:
                    pass
                elif type(reply) is Blocked:
                    self._block(reply)
                    break
                else:
                    encoded = encode(reply, session.resp3)
                    batch.append(encoded)
                    size += len(encoded)
                    if size >= OUTPUT_HIGH_WATER:
                        # Enough output for one write: the rest of the pipeline waits until the
                        # client has read this (resume_writing), so replies never pile up here.
                        self._output_full = True
                        break
                if session.closing:
                    break
        except ProtocolError as error:
            batch.append(encode_error(f"ERR {error}"))
            session.closing = True
        finally:
            self._batch = None
        self._deliver(transport, batch, session.closing)
        if not session.closing and self._output_full and not self._reading_paused:
            self._resume_later()  # the kernel took it all at once: carry on from the loop

    def _deliver(self, transport: asyncio.Transport, batch: list[bytes], close: bool) -> None:
        """Write a batch of replies with one write, then close if asked. While persistence has
        changes not yet written (reply_gate.pending), the batch waits for that write instead."""
        gate = self.server.reply_gate
        if gate is not None and gate.pending:
            data = b"".join(batch)
            self.state.net_output_bytes += len(data)
            gate.hold(transport, data, len(batch), close)
            return
        if batch:
            data = b"".join(batch)
            self.state.net_output_bytes += len(data)
            transport.write(data)
        if close:
            transport.close()

    def _send(self, data: bytes) -> None:
        """Out-of-band bytes for this client (pushes, a served blocking command)."""
        if self._batch is not None:
            self._batch.append(data)
            return
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        self.state.net_output_bytes += len(data)
        gate = self.server.reply_gate
        if gate is not None and gate.pending:  # durability: after the AOF write, in order
            gate.hold(transport, data, 1, False)
            return
        transport.write(data)
        if transport.get_write_buffer_size() > self.state.config.client_output_buffer_limit:
            logger.warning(
                "client %s dropped: output buffer over the limit",
                self.session.addr if self.session else "?",
                extra={"action": "client_output_limit"},
            )
            transport.abort()

    def _protocol_error(self, message: str) -> None:
        if self.transport is not None and not self.transport.is_closing():
            gate = self.server.reply_gate
            if gate is not None and gate.pending:  # after the replies held before it
                gate.hold(self.transport, encode_error(f"ERR {message}"), 1, True)
                return
            self.transport.write(encode_error(f"ERR {message}"))
            self.transport.close()

    def _disconnect(self) -> None:
        if self.transport is not None:
            self.transport.close()

    # -- blocking ---------------------------------------------------------------------------

    def _block(self, blocked: Blocked) -> None:
        assert self.session is not None
        self.blocked = blocked
        self._backlog = 0
        db = self.session.db
        for key in blocked.keys:
            db.blocked.setdefault(key, deque()).append(self)
        self.state.blocked_sessions.add(self.session)
        if blocked.timeout > 0:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(blocked.timeout, self._time_out)

    def _unblock(self) -> None:
        blocked = self.blocked
        if blocked is None or self.session is None:
            return
        self.blocked = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        db = self.session.db
        for key in blocked.keys:
            waiters = db.blocked.get(key)
            if waiters is not None:
                with contextlib.suppress(ValueError):
                    waiters.remove(self)
                if not waiters:
                    del db.blocked[key]
        self.state.blocked_sessions.discard(self.session)

    def _time_out(self) -> None:
        blocked = self.blocked
        if blocked is None or self.session is None:
            return
        self._timer = None
        self._unblock()
        self._send(encode(blocked.timeout_reply, self.session.resp3))
        self._resume_later()

    def try_serve(self) -> bool:
        """Retry the blocked command now that one of its keys changed; True when it was served."""
        blocked = self.blocked
        session = self.session
        if blocked is None or session is None:
            return False
        reply = session.resume(blocked)
        if reply is NOT_READY:
            return False
        self._unblock()
        self._send(encode(reply, session.resp3))
        self._resume_later()
        return True

    def _resume_later(self) -> None:
        """Run the commands that arrived while blocked, from a fresh loop iteration."""
        loop = asyncio.get_running_loop()
        loop.call_soon(self._resume)

    def _resume(self) -> None:
        if self.blocked is not None or self.transport is None or self.transport.is_closing():
            return
        try:
            self._process()
        except ProtocolError as error:
            self._protocol_error(str(error))


def _format_address(address: Any) -> str:
    if isinstance(address, tuple) and len(address) >= 2:
        host, port = address[0], address[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return str(address or "")


class AtlasServer:
    """The listening server, its connections, and the periodic work (expiry, idle timeouts)."""

    def __init__(self, state: ServerState, listen: ListenAddress) -> None:
        build_table()
        self.state = state
        self.listen = listen
        self.connections: set[Connection] = set()
        self._server: asyncio.AbstractServer | None = None
        self._cron: asyncio.Task[None] | None = None
        self._stopped = asyncio.Event()
        self.stop_hooks: list[Callable[[bool], None]] = []
        self.reply_gate: ReplyGate | None = None  # set by persistence (AOF group commit)
        state.shutdown = self.request_stop

    @property
    def port(self) -> int:
        assert self._server is not None
        sockets = cast(Any, self._server).sockets  # uvloop's Server is not asyncio.Server
        return int(sockets[0].getsockname()[1])

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: Connection(self), self.listen.host, self.listen.port, reuse_address=True, backlog=511
        )
        self.state.tcp_port = self.port
        self._cron = loop.create_task(self._run_cron())
        logger.info(
            "ATLAS listening on %s:%d",
            self.listen.host,
            self.port,
            extra={"action": "listening", "host": self.listen.host, "port": self.port},
        )

    def serve_blocked(self) -> None:
        """Serve clients blocked on keys that were written, oldest first (Redis's order)."""
        ready = self.state.ready_keys
        while ready:
            db, key = ready.pop(0)
            waiters = db.blocked.get(key)
            while waiters:
                if not waiters[0].try_serve():
                    break
                waiters = db.blocked.get(key)

    def request_stop(self, save: bool = True) -> None:
        """Stop serving (SHUTDOWN, SIGTERM): hooks run (persistence saves there), then we exit."""
        if self._stopped.is_set():
            return
        logger.info("ATLAS stopping", extra={"action": "stopping", "save": save})
        for hook in self.stop_hooks:
            hook(save)
        self._stopped.set()

    async def wait_stopped(self) -> None:
        await self._stopped.wait()
        await self.close()

    async def close(self) -> None:
        if self._cron is not None:
            self._cron.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._cron
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for connection in list(self.connections):
            if connection.transport is not None:
                connection.transport.close()
        logger.info("ATLAS stopped", extra={"action": "stopped"})

    async def _run_cron(self) -> None:
        last_commands = self.state.total_commands()
        last_time = time.monotonic()
        ticks = 0
        while True:
            await asyncio.sleep(CRON_SECONDS)
            self.state.store.active_expire_cycle()
            ticks += 1
            now = time.monotonic()
            commands = self.state.total_commands()
            self.state.ops_samples.append((commands - last_commands) / max(now - last_time, 1e-6))
            last_commands, last_time = commands, now
            if ticks % 10 == 0:
                self._close_idle_clients(now)

    def _close_idle_clients(self, now: float) -> None:
        timeout = self.state.config.timeout
        if not timeout:
            return
        for connection in list(self.connections):
            session = connection.session
            if session is None or connection.blocked is not None or session.channels or session.patterns:
                continue
            if now - session.last_interaction > timeout and connection.transport is not None:
                logger.info("closing idle client %s", session.addr, extra={"action": "client_idle_timeout"})
                connection.transport.close()


def install_signal_handlers(server: AtlasServer) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, server.request_stop, True)
