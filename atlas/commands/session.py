"""A client's session and the dispatcher: one request frame in, one reply value out.

`Session.execute` looks the command up, checks arity, authentication, MULTI queueing and the
RESP2 pub/sub restriction once, runs the handler, and after a write that changed the keyspace
does the three things every change needs: propagate it (in deterministic form) through the
store, invalidate WATCHes on its keys, and wake clients blocked on them. Sockets live in
atlas.server; tests drive sessions directly.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from atlas.commands import base
from atlas.commands.base import Command
from atlas.protocol import QUEUED, ErrorReply, ProtocolError, ProtocolLimits, Push, encode
from atlas.store.glob import compile_glob
from atlas.store.keyspace import Database, Store

REDIS_VERSION = "7.0.15"  # the Redis whose behaviour ATLAS follows; clients gate features on it
ATLAS_VERSION = "1.0.0"
NOT_READY = object()
NO_REPLY = object()  # SHUTDOWN: the connection closes without an answer, as in Redis
TIMING_SAMPLE = 16


@dataclass
class Blocked:
    """What a blocking command returns when it must wait: the server parks the session until one
    of `keys` is written (then calls `attempt` again) or `timeout` seconds pass (0: forever)."""

    keys: list[bytes]
    timeout: float
    attempt: Callable[[], Any]
    timeout_reply: Any


# Redis parameters that mean nothing here, with Redis's defaults: CONFIG GET reports them and
# CONFIG SET stores what it is given, so that tools and harnesses that set them keep working.
ACCEPTED_PARAMETERS = {
    "maxmemory": "0",
    "maxmemory-policy": "noeviction",
    "hash-max-listpack-entries": "128",
    "hash-max-listpack-value": "64",
    "list-max-listpack-size": "-2",
    "set-max-intset-entries": "512",
    "set-max-listpack-entries": "128",
    "zset-max-listpack-entries": "128",
    "zset-max-listpack-value": "64",
    "lazyfree-lazy-user-del": "no",
    "notify-keyspace-events": "",
    "slowlog-log-slower-than": "10000",
    "latency-tracking": "yes",
}


@dataclass
class RuntimeConfig:
    """What CONFIG GET/SET read and write. The parameters that take effect are attributes; the
    rest (encoding thresholds and the like, which mean nothing here) are kept in `others`."""

    requirepass: str = ""
    maxclients: int = 10000
    timeout: int = 0
    proto_max_bulk_len: int = 512 * 1024 * 1024
    client_query_buffer_limit: int = 1024 * 1024 * 1024
    client_output_buffer_limit: int = 256 * 1024 * 1024
    protected_mode: bool = True
    appendonly: bool = False
    appendfsync: str = "everysec"
    save: str = ""
    dir: str = "."
    databases: int = 16
    port: int = 6380
    bind: str = "127.0.0.1"
    others: dict[str, str] = field(default_factory=lambda: dict(ACCEPTED_PARAMETERS))


class PubSub:
    """Channel and pattern subscriptions of every session."""

    def __init__(self) -> None:
        self.channels: dict[bytes, dict[Session, None]] = {}
        self.patterns: dict[bytes, dict[Session, None]] = {}
        self._matchers: dict[bytes, Callable[[bytes], bool]] = {}

    def subscribe(self, session: Session, channel: bytes) -> bool:
        subscribers = self.channels.setdefault(channel, {})
        new = session not in subscribers
        subscribers[session] = None
        return new

    def unsubscribe(self, session: Session, channel: bytes) -> bool:
        subscribers = self.channels.get(channel)
        if subscribers is None or session not in subscribers:
            return False
        del subscribers[session]
        if not subscribers:
            del self.channels[channel]
        return True

    def psubscribe(self, session: Session, pattern: bytes) -> bool:
        subscribers = self.patterns.setdefault(pattern, {})
        new = session not in subscribers
        subscribers[session] = None
        self._matchers[pattern] = compile_glob(pattern)
        return new

    def punsubscribe(self, session: Session, pattern: bytes) -> bool:
        subscribers = self.patterns.get(pattern)
        if subscribers is None or session not in subscribers:
            return False
        del subscribers[session]
        if not subscribers:
            del self.patterns[pattern]
            del self._matchers[pattern]
        return True

    def publish(self, channel: bytes, message: bytes) -> int:
        """Deliver to every subscriber of `channel` and of a matching pattern; return how many."""
        receivers = 0
        for session in list(self.channels.get(channel, ())):
            session.push(Push([b"message", channel, message]))
            receivers += 1
        for pattern, subscribers in list(self.patterns.items()):
            if self._matchers[pattern](channel):
                for session in list(subscribers):
                    session.push(Push([b"pmessage", pattern, channel, message]))
                    receivers += 1
        return receivers


class ServerState:
    """What every session shares: the store, the configuration, the clients, pub/sub, stats."""

    def __init__(self, store: Store | None = None, config: RuntimeConfig | None = None) -> None:
        self.config = config or RuntimeConfig()
        self.store = store or Store(databases=self.config.databases)
        self.sessions: dict[int, Session] = {}
        self.pubsub = PubSub()
        self.started_at = time.time()
        self.next_client_id = 1
        self.total_connections = 0
        self.rejected_connections = 0
        self.ops_samples: deque[float] = deque(maxlen=16)
        self.ready_keys: list[tuple[Database, bytes]] = []
        self.blocked_sessions: set[Session] = set()
        self.protocol_limits = ProtocolLimits(self.config.proto_max_bulk_len, self.config.client_query_buffer_limit)
        self.net_input_bytes = 0
        self.net_output_bytes = 0
        self.run_id = f"{time.time_ns():040x}"[-40:]
        self.tcp_port = 0
        # Hooks the server installs: stop the process; describe persistence for INFO and SAVE.
        self.shutdown: Callable[[bool], None] | None = None
        self.info_sections: dict[str, Callable[[], list[tuple[str, Any]]]] = {}
        self.store.on_key_expired(self._key_expired)

    def new_session(self, addr: str = "", laddr: str = "") -> Session:
        session = Session(self, self.next_client_id, addr, laddr)
        self.next_client_id += 1
        self.total_connections += 1
        self.sessions[session.id] = session
        return session

    def total_commands(self) -> int:
        return sum(cmd.calls for cmd in TABLE_UNIQUE)

    def _key_expired(self, db: Database, key: bytes) -> None:
        touch_watchers(db, key)


def touch_watchers(db: Database, key: bytes) -> None:
    """A watched key changed: the EXEC of every session watching it must fail."""
    watchers = db.watched.get(key)
    if watchers:
        for session in watchers:
            session.watch_dirty = True


def touch_all_watchers(db: Database) -> None:
    for watchers in db.watched.values():
        for session in watchers:
            session.watch_dirty = True


class Session:
    """The state of one client connection and the command dispatcher."""

    def __init__(self, state: ServerState, client_id: int, addr: str = "", laddr: str = "") -> None:
        self.state = state
        self.store = state.store
        self.id = client_id
        self.addr = addr
        self.laddr = laddr
        self.db: Database = state.store.dbs[0]
        self.resp3 = False
        self.name = b""
        self.lib_name = b""
        self.lib_ver = b""
        self.authenticated = not state.config.requirepass
        self.multi: list[tuple[Command, list[bytes]]] | None = None
        self.multi_failed = False
        self.watching: set[tuple[int, bytes]] = set()
        self.watch_dirty = False
        self.channels: set[bytes] = set()
        self.patterns: set[bytes] = set()
        self.readonly = False
        self.in_exec = False  # inside EXEC: blocking commands answer at once instead of waiting
        self.created = time.time()
        self.last_interaction = time.monotonic()
        self.last_command = b""
        self.propagate_as: list[list[bytes]] | None = None
        self.closing = False
        self.kill_requested = False
        self.gated = not self.authenticated
        # Installed by the server: send bytes to this client (pushes, late replies), and drop it.
        self.writer: Callable[[bytes], None] | None = None
        self.disconnect: Callable[[], None] | None = None

    # -- dispatch ---------------------------------------------------------------------------

    def execute(self, args: list[Any]) -> Any:
        """Run one request frame; return its reply (a value for protocol.encode, or Blocked)."""
        for arg in args:
            if type(arg) is not bytes:
                raise ProtocolError("Protocol error: expected '$', got a non-bulk argument")
        cmd = TABLE.get(args[0])
        if cmd is None:
            cmd = TABLE.get(args[0].lower())
            if cmd is None:
                if self.multi is not None:
                    self.multi_failed = True
                return ErrorReply(base.unknown_command(args))
        arity = cmd.arity
        count = len(args)
        if (arity > 0 and count != arity) or count < -arity:
            if self.multi is not None:
                self.multi_failed = True
            return ErrorReply(base.wrong_arity(cmd.name))
        if self.gated:
            refusal = self._gate(cmd, args)
            if refusal is not None:
                return refusal
        # What follows runs for every command: kept in this one function on purpose.
        store = self.store
        dirty = store.dirty
        self.propagate_as = None
        self.last_command = cmd.name_bytes
        calls = cmd.calls + 1
        cmd.calls = calls
        if calls % TIMING_SAMPLE:
            try:
                reply = cmd.handler(self, args)
            except ErrorReply as error:
                cmd.failed_calls += 1
                reply = error
        else:
            reply = self._timed(cmd, args)
        if store.dirty != dirty and cmd.write and (store.listening or self.db.watched or self.db.blocked):
            self._changed(cmd, args)
        return reply

    def _timed(self, cmd: Command, args: list[bytes]) -> Any:
        """Run the handler and time it. One call in TIMING_SAMPLE is timed and counts for all of
        them (INFO commandstats usec and atlas_command_duration_seconds are estimates): two clock
        reads per command would cost a tenth of a SET."""
        started = time.perf_counter()
        try:
            return cmd.handler(self, args)
        except ErrorReply as error:
            cmd.failed_calls += 1
            return error
        finally:
            cmd.usec += (time.perf_counter() - started) * TIMING_SAMPLE

    def _changed(self, cmd: Command, args: list[bytes]) -> None:
        """Propagate a change (as rewritten by the handler, if it was) and notify the keys' watchers
        and waiters. The keys touched are those of the propagated commands."""
        db = self.db
        if self.propagate_as is None and not (db.watched or db.blocked):
            self.store.propagate(db.index, args)  # the common case, without the loop below
            return
        argvs = [args] if self.propagate_as is None else self.propagate_as
        for argv in argvs:
            self.store.propagate(db.index, argv)
            if db.watched or db.blocked:
                spec = cmd if argv is args else TABLE.get(argv[0].lower(), cmd)
                for key in spec.keys(argv):
                    if db.watched:
                        touch_watchers(db, key)
                    if key in db.blocked:
                        self.state.ready_keys.append((db, key))

    def resume(self, blocked: Blocked) -> Any:
        """Retry a parked blocking command (its keys were written); NOT_READY if still empty."""
        store = self.store
        dirty = store.dirty
        self.propagate_as = None
        try:
            reply = blocked.attempt()
        except ErrorReply as error:
            reply = error
        if store.dirty != dirty and self.propagate_as is not None:
            self._changed(_ANY_WRITE, [])
        return reply

    def _gate(self, cmd: Command, args: list[bytes]) -> Any:
        if not self.authenticated and not cmd.allowed_unauthenticated:
            return ErrorReply(base.NOAUTH)
        if self.multi is not None and cmd.name not in _RUN_INSIDE_MULTI:
            self.multi.append((cmd, args))
            return QUEUED
        if (self.channels or self.patterns) and not self.resp3 and not cmd.allowed_in_pubsub:
            return ErrorReply(
                f"ERR Can't execute '{cmd.name}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET "
                "are allowed in this context"
            )
        return None

    def refresh_gate(self) -> None:
        """Recompute whether execute() must look at auth, MULTI or pub/sub for this session."""
        self.gated = (
            not self.authenticated
            or self.multi is not None
            or (bool(self.channels or self.patterns) and not self.resp3)
        )

    # -- what handlers use --------------------------------------------------------------------

    def select(self, index: int) -> None:
        self.db = self.store.dbs[index]

    def rewrite(self, *argvs: list[bytes]) -> None:
        """Propagate these commands instead of the one received (deterministic forms)."""
        self.propagate_as = list(argvs)

    def push(self, value: Any) -> None:
        """Send an out-of-band message (pub/sub) to this client."""
        if self.writer is not None:
            self.writer(encode(value, self.resp3))

    def unwatch(self) -> None:
        for db_index, key in self.watching:
            watchers = self.store.dbs[db_index].watched.get(key)
            if watchers is not None:
                watchers.discard(self)
                if not watchers:
                    del self.store.dbs[db_index].watched[key]
        self.watching.clear()
        self.watch_dirty = False

    def close(self) -> None:
        """Forget this session everywhere (the connection is gone)."""
        self.unwatch()
        for channel in list(self.channels):
            self.state.pubsub.unsubscribe(self, channel)
        for pattern in list(self.patterns):
            self.state.pubsub.punsubscribe(self, pattern)
        self.channels.clear()
        self.patterns.clear()
        self.state.sessions.pop(self.id, None)


_ANY_WRITE = Command("(blocked)", lambda session, args: None, 0, frozenset({"write"}))
_RUN_INSIDE_MULTI = frozenset({"exec", "discard", "multi", "watch", "quit", "reset"})

TABLE: dict[bytes, Command] = {}
TABLE_UNIQUE: list[Command] = []


def reset_command_stats() -> None:
    """CONFIG RESETSTAT: the statistics live on the commands, one table per process."""
    for cmd in TABLE_UNIQUE:
        cmd.calls = cmd.failed_calls = 0
        cmd.usec = 0.0


def build_table() -> None:
    """Fill TABLE from the registry: every name in lower and upper case, for a lookup per call."""
    from atlas.commands import REGISTRY  # noqa: F401 - importing the package registers every family

    TABLE.clear()
    TABLE_UNIQUE.clear()
    for name, cmd in base.REGISTRY.items():
        TABLE_UNIQUE.append(cmd)
        TABLE[name.lower().encode()] = cmd
        TABLE[name.upper().encode()] = cmd
