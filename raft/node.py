"""The Raft driver: one node of a cluster over TCP, applying committed entries to a state machine.

RaftNode owns the IO that raft.core leaves out. On one asyncio event loop it ticks the core from
a monotonic clock, feeds it the messages the transport receives, and runs the Ready cycle:
persist (FileStorage, one fdatasync per Ready in a single worker thread, so proposals that queue
meanwhile are committed together: a group commit), then send, then apply committed entries to the
application's StateMachine and answer whoever waits for them. A leader sends its appends before
its own fsync (Ready.take_early_messages), so its disk write overlaps its followers'.

    node = RaftNode(NodeConfig(node_id=1, data_dir=..., listen=("127.0.0.1", 7001),
                               secret=..., peers={1: (...), 2: (...), 3: (...)}), fsm)
    await node.start()
    result = await node.propose(b"...", client_id="c1", seq=1)   # any node: followers forward
    await node.read_index()            # then read the state machine: linearizable
    await node.stop()

The application's payloads reach `StateMachine.apply(entry)` as `entry.data`; the driver also
replicates its own metadata (the address book of members) and the client-session table that
makes a retried (client_id, seq) apply once, and puts both into snapshots beside the
application's own bytes. See the README's Raft section for the whole API.

Timing: a tick is half a heartbeat interval. Ticks are counted from time.monotonic(), but one
wake-up of the ticker delivers at most one heartbeat interval of ticks: a process that was not
running (a loaded machine, a stopped process) did not observe its leader's silence for that long,
so a stall cannot turn into an instant election. A leader whose Ready is stuck behind a slow
fsync still sends heartbeats (carrying only its term, which is durable) every interval, so a
slow disk does not cost it its followers.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import heapq
import json
import logging
import os
import random
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import msgpack

from raft.core import (
    ClientSessions,
    ConfChange,
    ConfChangeOp,
    ConfChangeRefused,
    Config,
    ConfState,
    Entry,
    EntryKind,
    InvalidMessage,
    Message,
    MessageType,
    NotLeader,
    ProposalDropped,
    RaftError,
    RawNode,
    Ready,
    Role,
    Snapshot,
    SoftState,
    TransferRefused,
    Verdict,
    bootstrap_state,
    decode_conf_entry,
)
from raft.storage import FileStorage
from raft.transport import (
    Address,
    OutcomeUnknown,
    PeerUnavailable,
    RemoteError,
    Transport,
    TransportConfig,
    TransportError,
    tls_contexts,
)

logger = logging.getLogger(__name__)

TAG_APP = 0  # first byte of a NORMAL entry: the application's payload follows
TAG_META = 1  # the driver's own metadata follows (msgpack)
IDENTITY_FILE = "identity.json"
SNAPSHOT_FORMAT = 1
RESULTS_KEPT = 16384  # results of recently applied entries, for a follower whose waiter arrives late

__all__ = [
    "NodeConfig",
    "NodeError",
    "NodeIdentityError",
    "NodeStopped",
    "NotLeader",
    "OutcomeUnknown",
    "ProposalLost",
    "RaftNode",
    "SessionExpired",
    "StateMachine",
    "Unavailable",
    "parse_node_id",
    "parse_peers",
]


class StateMachine(Protocol):
    """What the application plugs in. Every method runs on the event loop and must be deterministic.

    apply: the entry's `data` is the application's payload (as proposed); `index`, `term`,
      `client_id`, `seq` are there too. Returns the answer for whoever proposed it.
    snapshot: the whole state as bytes, as of the last applied entry.
    restore: replace the whole state by a snapshot's bytes.
    """

    def apply(self, entry: Entry) -> bytes: ...

    def snapshot(self) -> bytes: ...

    def restore(self, data: bytes) -> None: ...


AppHandler = Callable[[bytes], Awaitable[bytes]]


class NodeError(Exception):
    """Base of the driver's errors."""


class NodeIdentityError(NodeError):
    """The data directory belongs to another node or another cluster, or holds state of unknown origin."""


class NodeStopped(NodeError):
    """The node stopped (or failed) while the request was waiting."""


class Unavailable(NodeError):
    """The request could not be started (no leader reachable, queue full). It certainly did nothing."""


class ProposalLost(NodeError):
    """The entry was replaced in the log by another leader's: it certainly was not applied."""


class SessionExpired(NodeError):
    """The client's session is unknown or the request older than its last one; it was not applied."""


def parse_node_id(text: str | int) -> int:
    """A node id from `3` or `node-3` (positive integers: the core numbers its nodes)."""
    raw = str(text).strip()
    digits = raw.removeprefix("node-")
    if not digits.isdigit() or int(digits) <= 0:
        raise ValueError(f"a node id is a positive integer or node-N, got {text!r}")
    return int(digits)


def parse_address(text: str) -> Address:
    host, sep, port = text.strip().rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected host:port, got {text!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def parse_peers(text: str) -> dict[int, Address]:
    """`node-1=host:port,node-2=host:port` (like etcd's --initial-cluster) as {id: (host, port)}."""
    peers: dict[int, Address] = {}
    for item in text.split(","):
        if not item.strip():
            continue
        name, sep, address = item.partition("=")
        if not sep:
            raise ValueError(f"expected id=host:port, got {item!r}")
        node_id = parse_node_id(name)
        if node_id in peers:
            raise ValueError(f"node {node_id} is listed twice")
        peers[node_id] = parse_address(address)
    return peers


def cluster_id_for(name: str, members: list[int]) -> str:
    """The id every founding member computes alike: the cluster name and its founding members."""
    text = f"helios-raft|{name}|{','.join(str(m) for m in sorted(members))}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class NodeConfig:
    """One node's settings. Times in seconds.

    peers: the founding members (including this node) when starting a new cluster, like etcd's
      --initial-cluster; also how this node reaches those peers (it may name a proxy), which
      takes precedence over the replicated address book. Empty when joining.
    join: the address of any running member, to join through (as a learner, then a voter).
    heartbeat / election_timeout: a follower that hears nothing for a random time in
      [election_timeout, 2 * election_timeout) starts an election.
    snapshot_entries: take a snapshot (and compact the log) about every this many applied entries.
    """

    node_id: int
    data_dir: Path
    listen: Address
    secret: bytes
    peers: dict[int, Address] = field(default_factory=dict)
    join: Address | None = None
    join_as_learner: bool = False
    advertise: Address | None = None
    cluster_name: str = "helios"
    heartbeat: float = 0.05
    election_timeout: float = 0.15
    snapshot_entries: int = 10_000
    max_apply_bytes: int = 1024 * 1024
    fsync: bool = True
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_ca: str | None = None
    request_timeout: float = 5.0
    max_sessions: int = 100_000

    def validate(self) -> None:
        if self.node_id <= 0:
            raise ValueError(f"node id must be positive, got {self.node_id}")
        if self.heartbeat <= 0 or self.election_timeout < 2 * self.heartbeat:
            raise ValueError("election timeout must be at least twice the heartbeat interval")
        if self.peers and self.node_id not in self.peers and self.join is None:
            raise ValueError(f"node {self.node_id} is not in its own peer list")
        if self.snapshot_entries <= 0:
            raise ValueError("snapshot_entries must be positive")
        tls = (self.tls_cert, self.tls_key, self.tls_ca)
        if any(tls) and not all(tls):
            raise ValueError("TLS needs a certificate, its key and the CA file")

    @property
    def advertised(self) -> Address:
        return self.advertise or self.listen

    def tick_interval(self) -> float:
        return self.heartbeat / 2


HEARTBEAT_TICKS = 2


class _Identity:
    """identity.json in the data directory: which node and which cluster the directory belongs to."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> dict[str, Any] | None:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise NodeIdentityError(f"{self.path} is unreadable: {exc}") from None
        if (
            not isinstance(data, dict)
            or type(data.get("node_id")) is not int
            or type(data.get("cluster_id")) is not str
        ):
            raise NodeIdentityError(f"{self.path} is not a node identity file")
        return data

    def save(self, node_id: int, cluster_id: str) -> None:
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "w") as handle:
            json.dump({"node_id": node_id, "cluster_id": cluster_id}, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.path)
        fd = os.open(self.path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _pack(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)  # type: ignore[no-any-return]


def _unpack(data: bytes) -> Any:
    return msgpack.unpackb(data, raw=False, strict_map_key=False)


@dataclass
class _Stats:
    ticks: int = 0
    ticks_forgiven: int = 0  # elapsed ticks not delivered because the process was not running
    tick_lag_max: float = 0.0
    readies: int = 0
    fsyncs: int = 0
    persist_seconds_max: float = 0.0
    direct_heartbeats: int = 0
    leader_changes: int = 0
    applied_entries: int = 0
    snapshots_taken: int = 0
    snapshots_installed: int = 0
    proposals: int = 0
    forwarded: int = 0


class RaftNode:
    """One Raft node over TCP; see the module docstring. Create, `await start()`, `await stop()`."""

    def __init__(self, config: NodeConfig, fsm: StateMachine, *, app_handler: AppHandler | None = None) -> None:
        config.validate()
        self.config = config
        self.fsm = fsm
        self.app_handler = app_handler
        self.id = config.node_id
        self.cluster_id = ""
        self._storage: FileStorage | None = None
        self._raw: RawNode | None = None
        self._transport: Transport | None = None
        self._disk = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"raft-disk-{self.id}")
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._background: set[asyncio.Task[Any]] = set()
        self._stopped = False
        self.failure: BaseException | None = None
        self.stats = _Stats()
        # application state the driver keeps beside the FSM
        self._sessions = ClientSessions(max_clients=config.max_sessions)
        self._book: dict[int, Address] = {}
        self._learned: dict[int, Address] = {}
        self._conf = ConfState()
        self._applied = 0
        self._snapshot_meta: tuple[int, int, int] = (0, 0, 0)  # index, term, bytes
        self._next_snapshot_gap = config.snapshot_entries
        # waiters
        self._waiters: dict[int, list[tuple[int, asyncio.Future[bytes]]]] = {}
        self._results: OrderedDict[int, tuple[int, bytes | Exception]] = OrderedDict()
        self._reads: dict[bytes, asyncio.Future[int]] = {}
        self._read_counter = 0
        self._read_prefix = os.urandom(8)
        self._apply_waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._apply_waiter_seq = 0
        self._role = Role.FOLLOWER
        self._leader = 0
        self._persisting_since: float | None = None
        self._last_direct_heartbeat = 0.0

    # --- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Open (or create) the data directory, check it belongs to this node, join the cluster."""
        config = self.config
        loop = asyncio.get_running_loop()
        try:
            self._storage = await loop.run_in_executor(self._disk, self._open_storage)
        except BaseException:
            self._disk.shutdown(wait=False)
            raise
        state = self._storage.load()
        raft_config = Config(
            id=self.id,
            election_ticks=max(HEARTBEAT_TICKS + 1, round(config.election_timeout / config.tick_interval())),
            heartbeat_ticks=HEARTBEAT_TICKS,
            max_apply_bytes=config.max_apply_bytes,
        )
        self._raw = RawNode(raft_config, rng=random.Random(), state=state)
        if state.snapshot is not None:
            self._restore(state.snapshot.data)
            meta = state.snapshot.meta
            self._applied = meta.index
            self._snapshot_meta = (meta.index, meta.term, len(state.snapshot.data))
        self._conf = self._raw.raft.conf
        server_ssl = client_ssl = None
        if config.tls_cert and config.tls_key and config.tls_ca:
            server_ssl, client_ssl = tls_contexts(config.tls_cert, config.tls_key, config.tls_ca)
        self._transport = Transport(
            TransportConfig(
                node_id=self.id,
                listen=config.listen,
                secret=config.secret,
                advertise=config.advertise,
                server_ssl=server_ssl,
                client_ssl=client_ssl,
            ),
            on_message=self._on_message,
            on_request=self._on_request,
            on_address=self._on_address,
            cluster_id=self.cluster_id,
        )
        await self._transport.start()
        self._update_peers()
        self._tasks = [
            loop.create_task(self._ready_loop(), name=f"raft-ready-{self.id}"),
            loop.create_task(self._ticker(), name=f"raft-ticker-{self.id}"),
        ]
        for task in self._tasks:
            task.add_done_callback(self._task_done)
        if config.join is not None and self.id not in self._conf.members():
            self._spawn(self._join_loop(config.join))
        self._wake.set()
        logger.info(
            "raft node %d started on %s:%d (cluster %s, %d entries, applied %d)",
            self.id,
            *config.listen,
            self.cluster_id or "unknown yet",
            len(state.entries),
            self._applied,
            extra={"action": "raft_node_start", "node_id": self.id},
        )

    def _open_storage(self) -> FileStorage:
        config = self.config
        storage = FileStorage.open(config.data_dir, sync=config.fsync)
        try:
            identity = _Identity(Path(config.data_dir) / IDENTITY_FILE)
            known = identity.load()
            founding = cluster_id_for(config.cluster_name, list(config.peers)) if config.join is None else ""
            if known is not None:
                if known["node_id"] != self.id:
                    raise NodeIdentityError(
                        f"{config.data_dir} belongs to node {known['node_id']}, not node {self.id}; refusing to start"
                    )
                if founding and known["cluster_id"] and known["cluster_id"] != founding:
                    raise NodeIdentityError(
                        f"{config.data_dir} belongs to cluster {known['cluster_id']}, but these peers and cluster "
                        f"name make cluster {founding}; refusing to start"
                    )
                self.cluster_id = known["cluster_id"]
                return storage
            if not storage.is_empty():
                raise NodeIdentityError(f"{config.data_dir} holds raft state but no {IDENTITY_FILE}; refusing to start")
            if config.join is None:
                if not config.peers:
                    raise NodeIdentityError(
                        "an empty data directory needs peers (a new cluster) or join (an existing one)"
                    )
                storage.initialize(bootstrap_state(sorted(config.peers)))
                self.cluster_id = founding
            identity.save(self.id, self.cluster_id)
            return storage
        except BaseException:
            storage.close()
            raise

    async def stop(self) -> None:
        """Stop ticking and serving, wait for the disk thread, close connections and storage."""
        if self._stopped:
            return
        self._stopped = True
        for task in [*self._tasks, *self._background]:
            task.cancel()
        for task in [*self._tasks, *self._background]:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._fail_waiters(NodeStopped(f"node {self.id} stopped"))
        if self._transport is not None:
            await self._transport.close()
        await asyncio.get_running_loop().run_in_executor(self._disk, self._close_storage)
        self._disk.shutdown(wait=True)
        logger.info("raft node %d stopped", self.id, extra={"action": "raft_node_stop", "node_id": self.id})

    def _close_storage(self) -> None:
        if self._storage is not None:
            self._storage.close()

    async def wait_stopped(self) -> None:
        """Return when the node's loops end (after stop(), or a failure that stopped the node)."""
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled() or self._stopped:
            return
        exc = task.exception()
        self.failure = exc or NodeError(f"{task.get_name()} ended")
        logger.critical(
            "raft node %d failed and stops: %r", self.id, self.failure, extra={"action": "raft_node_failed"}
        )
        self._stopped = True
        for other in self._tasks:
            other.cancel()
        self._fail_waiters(NodeStopped(f"node {self.id} failed: {self.failure!r}"))

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    @property
    def raw(self) -> RawNode:
        assert self._raw is not None, "start() the node first"
        return self._raw

    @property
    def transport(self) -> Transport:
        assert self._transport is not None, "start() the node first"
        return self._transport

    # --- what others see -----------------------------------------------------------------------

    @property
    def role(self) -> Role:
        return self.raw.raft.role

    @property
    def leader_id(self) -> int:
        return self.raw.raft.leader

    @property
    def term(self) -> int:
        return self.raw.raft.term

    @property
    def is_leader(self) -> bool:
        return self.raw.raft.role == Role.LEADER

    @property
    def applied_index(self) -> int:
        return self._applied

    @property
    def commit_index(self) -> int:
        return self.raw.raft.log.committed

    def address_of(self, node_id: int) -> Address | None:
        """How this node reaches `node_id`: its own peer list, then the replicated book, then what it heard."""
        if node_id == self.id:
            return self.config.advertised
        return self.config.peers.get(node_id) or self._book.get(node_id) or self._learned.get(node_id)

    # --- the event loop's inputs -----------------------------------------------------------------

    def _on_message(self, message: Message) -> None:
        if self._stopped:
            return
        try:
            self.raw.step(message)
        except InvalidMessage:
            raise
        except RaftError as exc:
            logger.warning("raft message from %d refused: %s", message.src, exc)
            return
        self._wake.set()

    def _on_address(self, peer_id: int, address: Address) -> None:
        if self._learned.get(peer_id) != address:
            self._learned[peer_id] = address
            if peer_id in self._conf.members() or peer_id == self.raw.raft.leader:
                self._update_peers()

    async def _ticker(self) -> None:
        interval = self.config.tick_interval()
        loop_time = time.monotonic
        next_at = loop_time() + interval
        raw = self.raw
        stats = self.stats
        while True:
            delay = next_at - loop_time()
            if delay > 0:
                await asyncio.sleep(delay)
            now = loop_time()
            lag = now - next_at
            due = 1 + int(lag / interval) if lag > 0 else 1
            stats.tick_lag_max = max(stats.tick_lag_max, lag)
            deliver = min(due, HEARTBEAT_TICKS)
            for _ in range(deliver):
                raw.tick()
            stats.ticks += deliver
            stats.ticks_forgiven += due - deliver
            next_at += due * interval
            self._direct_heartbeat(now)
            self._wake.set()

    def _direct_heartbeat(self, now: float) -> None:
        """While a leader's Ready waits for the disk, keep its followers from timing out.

        A heartbeat carries only the leader's term, durable since it won the election, so it may
        leave before the Ready being persisted (which holds the core's own heartbeats) is done.
        """
        started = self._persisting_since
        r = self.raw.raft
        heartbeat = self.config.heartbeat
        if started is None or r.role != Role.LEADER or now - started < heartbeat:
            return
        if now - self._last_direct_heartbeat < heartbeat:
            return
        self._last_direct_heartbeat = now
        self.stats.direct_heartbeats += 1
        for peer in r.progress:
            if peer != self.id:
                self.transport.send(Message(MessageType.HEARTBEAT, self.id, peer, term=r.term))

    # --- the Ready cycle -------------------------------------------------------------------------

    async def _ready_loop(self) -> None:
        raw = self.raw
        storage = self._storage
        assert storage is not None
        loop = asyncio.get_running_loop()
        transport = self.transport
        stats = self.stats
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self._snapshot_due():
                await self._take_snapshot()
            while raw.has_ready():
                rd = raw.ready()
                stats.readies += 1
                if rd.soft_state is not None:
                    self._on_soft_state(rd.soft_state)
                early = rd.take_early_messages()  # a leader's appends overlap its own fsync
                if early:
                    for message in early:
                        transport.send(message)
                    transport.flush()
                if rd.must_sync or rd.entries or rd.snapshot is not None:
                    # Off the event loop (a congested disk could block even a write without fsync),
                    # in the one disk thread: one fdatasync for everything this Ready holds.
                    started = self._persisting_since = time.monotonic()
                    try:
                        await loop.run_in_executor(self._disk, storage.persist, rd)
                    finally:
                        self._persisting_since = None
                    if rd.must_sync:
                        stats.fsyncs += 1
                    stats.persist_seconds_max = max(stats.persist_seconds_max, time.monotonic() - started)
                elif rd.needs_persist():
                    # Only the commit index moved. Raft keeps it as volatile state (a restarted node
                    # learns it again from its leader), so it is written with the next Ready that
                    # holds entries or a new term or vote, not on its own: one trip to the disk
                    # thread less per commit, on every node.
                    rd.mark_persisted()
                for message in rd.messages:
                    transport.send(message)
                if rd.messages:
                    transport.flush()
                if rd.snapshot is not None:
                    self._install_snapshot(rd.snapshot)
                for entry in rd.committed_entries:
                    self._apply(entry)
                for read in rd.read_states:
                    future = self._reads.pop(read.context, None)
                    if future is not None and not future.done():
                        future.set_result(read.index)
                raw.advance(rd)
                self._after_advance(rd)
                if self._snapshot_due():
                    await self._take_snapshot()

    def _on_soft_state(self, soft: SoftState) -> None:
        if soft.leader != self._leader:
            self.stats.leader_changes += 1
            logger.info(
                "raft node %d: leader is now %s (term %d, role %s)",
                self.id,
                soft.leader or "unknown",
                self.raw.raft.term,
                soft.role.name.lower(),
                extra={"action": "raft_leader_change", "node_id": self.id},
            )
        became_leader = soft.role == Role.LEADER and self._role != Role.LEADER
        leader_changed = soft.leader != self._leader
        self._role = soft.role
        self._leader = soft.leader
        if leader_changed and soft.leader and soft.leader not in self._conf.members():
            self._update_peers()
        if became_leader:
            self._spawn(self._complete_address_book())

    def _after_advance(self, rd: Ready) -> None:
        conf = self.raw.raft.conf
        if conf != self._conf:
            self._conf = conf
            self._update_peers()
        if rd.committed_entries or rd.snapshot is not None:
            self._release_apply_waiters()

    def _update_peers(self) -> None:
        """Dial every member, and the leader even before this node knows it is a member (joining)."""
        peers: dict[int, Address] = {}
        wanted = set(self._conf.members())
        if self._raw is not None and self._raw.raft.leader:
            wanted.add(self._raw.raft.leader)
        wanted.discard(self.id)
        for member in sorted(wanted):
            address = self.address_of(member)
            if address is None:
                logger.warning("raft node %d: no address known for node %d", self.id, member)
                continue
            peers[member] = address
        self.transport.set_peers(peers)

    # --- applying ----------------------------------------------------------------------------

    def _apply(self, entry: Entry) -> None:
        result: bytes | Exception = b""
        if entry.kind == EntryKind.NORMAL and entry.data:
            tag = entry.data[0]
            if tag == TAG_APP:
                result = self._apply_app(entry)
            elif tag == TAG_META:
                self._apply_meta(entry.data[1:])
        elif entry.kind == EntryKind.CONF_CHANGE:
            _, change = decode_conf_entry(entry.data)
            if change.op == ConfChangeOp.REMOVE and change.node_id == self.id:
                logger.warning("raft node %d was removed from the cluster", self.id)
            if change.op == ConfChangeOp.REMOVE:
                self._book.pop(change.node_id, None)
        self._applied = entry.index
        self.stats.applied_entries += 1
        self._settle(entry.index, entry.term, result)

    def _apply_app(self, entry: Entry) -> bytes | Exception:
        check = self._sessions.check(entry.client_id, entry.seq)
        if check.verdict is Verdict.NEW:
            answer = self.fsm.apply(entry._replace(data=entry.data[1:]))
            self._sessions.record(entry.client_id, entry.seq, answer)
            return answer
        if check.verdict is Verdict.DUPLICATE:
            return check.response
        return SessionExpired(
            f"request {entry.seq} of client {entry.client_id!r} is {check.verdict.value}: "
            "not applied; use a new client id"
        )

    def _apply_meta(self, data: bytes) -> None:
        try:
            record = _unpack(data)
        except Exception:
            logger.error("raft node %d: undecodable metadata entry ignored", self.id)
            return
        if type(record) is list and len(record) == 4 and record[0] == "addr":
            _, node_id, host, port = record
            self._book[int(node_id)] = (str(host), int(port))
            if node_id in self._conf.members():
                self._update_peers()

    def _settle(self, index: int, term: int, result: bytes | Exception) -> None:
        results = self._results
        results[index] = (term, result)
        if len(results) > RESULTS_KEPT:
            results.popitem(last=False)
        waiters = self._waiters.pop(index, None)
        if not waiters:
            return
        for wanted_term, future in waiters:
            if future.done():
                continue
            if wanted_term != term:
                future.set_exception(ProposalLost(f"entry {index} of term {wanted_term} was replaced"))
            elif isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)

    def _release_apply_waiters(self) -> None:
        heap = self._apply_waiters
        while heap and heap[0][0] <= self._applied:
            _, _, future = heapq.heappop(heap)
            if not future.done():
                future.set_result(None)

    # --- snapshots -----------------------------------------------------------------------------

    def _snapshot_bytes(self) -> bytes:
        book = [[node_id, host, port] for node_id, (host, port) in sorted(self._book.items())]
        return _pack([SNAPSHOT_FORMAT, self._sessions.to_bytes(), book, self.cluster_id, self.fsm.snapshot()])

    def _restore(self, data: bytes) -> None:
        fields = _unpack(data)
        if type(fields) is not list or len(fields) != 5 or fields[0] != SNAPSHOT_FORMAT:
            raise NodeError("snapshot is not in this driver's format")
        _, sessions, book, cluster_id, app = fields
        self._sessions = ClientSessions.from_bytes(sessions, max_clients=self.config.max_sessions)
        self._book = {int(n): (str(h), int(p)) for n, h, p in book}
        if cluster_id and not self.cluster_id:
            self._adopt_cluster_id(str(cluster_id))
        self.fsm.restore(app)

    def _install_snapshot(self, snapshot: Snapshot) -> None:
        self._restore(snapshot.data)
        meta = snapshot.meta
        self._applied = meta.index
        self._snapshot_meta = (meta.index, meta.term, len(snapshot.data))
        self.stats.snapshots_installed += 1
        self._results.clear()
        for index in [i for i in self._waiters if i <= meta.index]:
            for _, future in self._waiters.pop(index):
                if not future.done():
                    future.set_exception(OutcomeUnknown(f"entry {index} arrived inside a snapshot; its answer is lost"))
        logger.info(
            "raft node %d installed a snapshot at %d (%d bytes)",
            self.id,
            meta.index,
            len(snapshot.data),
            extra={"action": "raft_snapshot_install", "node_id": self.id},
        )

    def _snapshot_due(self) -> bool:
        behind = self._applied - self._snapshot_meta[0]
        return behind > 0 and behind >= self._next_snapshot_gap

    async def _take_snapshot(self) -> None:
        index = self._applied
        data = self._snapshot_bytes()
        snapshot = self.raw.compact(index, data)
        storage = self._storage
        assert storage is not None

        def save() -> None:
            storage.save_snapshot(snapshot)
            storage.compact(index)

        self._persisting_since = time.monotonic()  # heartbeats go on while the file is written
        try:
            await asyncio.get_running_loop().run_in_executor(self._disk, save)
        finally:
            self._persisting_since = None
        self._snapshot_meta = (index, snapshot.meta.term, len(data))
        self.stats.snapshots_taken += 1
        # Nodes snapshot at different points, so two followers never stall on it together.
        self._next_snapshot_gap = int(self.config.snapshot_entries * (1 + random.random() / 2))

    async def snapshot_now(self) -> int:
        """Take a snapshot at the applied index now (the log is compacted); returns its index."""
        if self._applied > self._snapshot_meta[0]:
            self._next_snapshot_gap = 0
            self._wake.set()
            target = self._applied
            while self._snapshot_meta[0] < target and not self._stopped:
                self._wake.set()
                await asyncio.sleep(self.config.tick_interval())
        return self._snapshot_meta[0]

    # --- proposing ---------------------------------------------------------------------------

    def propose_nowait(self, data: bytes, *, client_id: str = "", seq: int = 0) -> tuple[int, int]:
        """On the leader: append `data` to the log now; returns (index, term) for wait_applied().

        Raises NotLeader (with .leader) on any other node, ProposalDropped if the leader refuses.
        """
        self._check_running()
        raw = self.raw
        if raw.raft.role != Role.LEADER:
            raise NotLeader(raw.raft.leader)
        index = raw.propose(bytes((TAG_APP,)) + data, client_id=client_id, seq=seq)
        assert index is not None
        self.stats.proposals += 1
        self._wake.set()
        return index, raw.raft.term

    async def wait_applied(self, index: int, term: int, *, timeout: float | None = None) -> bytes:
        """Wait until this node applies entry `index`; return the state machine's answer if its term is `term`.

        Raises ProposalLost when another entry took that index (certainly not applied),
        SessionExpired for a request the sessions refused, OutcomeUnknown on timeout or when the
        entry reached this node inside a snapshot.
        """
        timeout = self.config.request_timeout if timeout is None else timeout
        if index <= self._applied:
            known = self._results.get(index)
            if known is None:
                raise OutcomeUnknown(f"entry {index} was applied before its answer was asked for")
            applied_term, result = known
            if applied_term != term:
                raise ProposalLost(f"entry {index} of term {term} was replaced")
            if isinstance(result, Exception):
                raise result
            return result
        self._check_running()
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        waiters = self._waiters.setdefault(index, [])
        waiters.append((term, future))
        try:
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise OutcomeUnknown(f"entry {index} was not applied here within {timeout:.1f}s") from None
        finally:
            if not future.done():
                future.cancel()
            remaining = self._waiters.get(index)
            if remaining is not None:
                remaining[:] = [w for w in remaining if w[1] is not future]
                if not remaining:
                    del self._waiters[index]

    async def propose(self, data: bytes, *, client_id: str = "", seq: int = 0, timeout: float | None = None) -> bytes:
        """Replicate `data` and return the state machine's answer once this node applied it.

        On a follower the proposal is forwarded to the leader, and the answer comes from this
        node's own apply (so a client reads its writes here afterwards). Errors that mean the
        request certainly did nothing: NotLeader (no leader known), Unavailable, ProposalDropped,
        ProposalLost, SessionExpired. OutcomeUnknown means it may have been applied: retry with
        the same (client_id, seq) and the state machine sees it once.
        """
        timeout = self.config.request_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        if self.is_leader:
            index, term = self.propose_nowait(data, client_id=client_id, seq=seq)
        else:
            reply = await self._call_leader("propose", _pack([data, client_id, seq]), timeout)
            index, term = _unpack(reply)
            self.stats.forwarded += 1
        return await self.wait_applied(index, term, timeout=max(0.0, deadline - time.monotonic()))

    async def read_index(self, *, timeout: float | None = None) -> int:
        """Wait until this node may serve a linearizable read; returns the read index (applied here).

        The leader confirms with a quorum that it still leads (thesis 6.4); a follower asks the
        leader. Raises NotLeader when no leader is known, Unavailable when none answers in time.
        """
        self._check_running()
        timeout = self.config.request_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        self._read_counter += 1
        context = self._read_prefix + self._read_counter.to_bytes(8, "big")
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._reads[context] = future
        try:
            self.raw.read_index(context)
            self._wake.set()
            index = await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise Unavailable(f"no quorum confirmed a read within {timeout:.1f}s") from None
        finally:
            self._reads.pop(context, None)
        await self.wait_for_applied(index, timeout=max(0.0, deadline - time.monotonic()))
        return index

    async def wait_for_applied(self, index: int, *, timeout: float | None = None) -> None:
        """Return once this node applied `index` (Unavailable after `timeout`)."""
        if index <= self._applied:
            return
        self._check_running()
        timeout = self.config.request_timeout if timeout is None else timeout
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._apply_waiter_seq += 1
        heapq.heappush(self._apply_waiters, (index, self._apply_waiter_seq, future))
        try:
            await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise Unavailable(f"entry {index} was not applied here within {timeout:.1f}s") from None

    async def forward(self, payload: bytes, *, timeout: float | None = None) -> bytes:
        """Run the application's handler (RaftNode(app_handler=...)) on the leader and return its answer.

        On the leader it runs here. Errors: NotLeader, Unavailable (not sent), OutcomeUnknown
        (sent, no answer), RemoteError (the handler raised one).
        """
        timeout = self.config.request_timeout if timeout is None else timeout
        if self.is_leader:
            if self.app_handler is None:
                raise NodeError("no application handler")
            return await self.app_handler(payload)
        return await self._call_leader("forward", payload, timeout)

    async def _call_leader(self, method: str, body: bytes, timeout: float) -> bytes:
        self._check_running()
        leader = self.leader_id
        if leader == 0:
            raise NotLeader(0)
        if leader == self.id:
            return await self._serve(self.id, method, body)
        try:
            return await self.transport.call(leader, method, body, timeout=timeout)
        except PeerUnavailable as exc:
            raise Unavailable(str(exc)) from None
        except RemoteError as exc:
            raise _error_from_remote(exc) from None

    def _check_running(self) -> None:
        if self._stopped:
            raise NodeStopped(f"node {self.id} is stopped")

    def _fail_waiters(self, exc: Exception) -> None:
        for waiters in self._waiters.values():
            for _, future in waiters:
                if not future.done():
                    future.set_exception(exc)
        self._waiters.clear()
        for read in self._reads.values():
            if not read.done():
                read.set_exception(exc)
        self._reads.clear()
        for _, _, waiter in self._apply_waiters:
            if not waiter.done():
                waiter.set_exception(exc)
        self._apply_waiters.clear()

    # --- requests from peers -----------------------------------------------------------------

    async def _on_request(self, peer: int, method: str, body: bytes) -> bytes:
        try:
            return await self._serve(peer, method, body)
        except NotLeader as exc:
            raise RemoteError("not_leader", str(exc), exc.leader) from None
        except ProposalDropped as exc:
            raise RemoteError("dropped", str(exc)) from None
        except ConfChangeRefused as exc:
            raise RemoteError("conf_refused", str(exc)) from None
        except TransferRefused as exc:
            raise RemoteError("transfer_refused", str(exc)) from None
        except (OutcomeUnknown, TimeoutError) as exc:
            raise RemoteError("unknown", str(exc)) from None
        except (Unavailable, ProposalLost, NodeStopped) as exc:
            raise RemoteError("unavailable", str(exc)) from None

    async def _serve(self, peer: int, method: str, body: bytes) -> bytes:
        if method == "propose":
            data, client_id, seq = _unpack(body)
            index, term = self.propose_nowait(bytes(data), client_id=str(client_id), seq=int(seq))
            return _pack([index, term])
        if method == "forward":
            if self.app_handler is None:
                raise RemoteError("no_handler", "this node runs no application handler")
            if not self.is_leader:
                raise NotLeader(self.leader_id)
            return await self.app_handler(body)
        if method == "join":
            node_id, host, port, voter = _unpack(body)
            if not self.is_leader:  # the joiner does not know the leader: pass it on
                return await self._call_leader("join", body, self.config.request_timeout * 6)
            await self.add_member(int(node_id), (str(host), int(port)), voter=bool(voter))
            book = {n: self.address_of(n) for n in self._conf.members()}
            return _pack([self.cluster_id, [[n, a[0], a[1]] for n, a in book.items() if a is not None]])
        if method == "add_member":
            node_id, host, port, voter = _unpack(body)
            await self.add_member(int(node_id), (str(host), int(port)), voter=bool(voter))
            return b""
        if method == "remove_member":
            await self.remove_member(int(_unpack(body)))
            return b""
        if method == "transfer":
            await self.transfer_leadership(int(_unpack(body)))
            return b""
        raise RemoteError("unknown_method", f"unknown method {method!r}")

    # --- membership ----------------------------------------------------------------------------

    async def _propose_meta(self, record: list[Any], timeout: float) -> None:
        raw = self.raw
        if raw.raft.role != Role.LEADER:
            raise NotLeader(raw.raft.leader)
        index = raw.propose(bytes((TAG_META,)) + _pack(record))
        assert index is not None
        self._wake.set()
        await self.wait_applied(index, raw.raft.term, timeout=timeout)

    async def _propose_conf(self, change: ConfChange, deadline: float) -> None:
        """Propose a change on the leader, retrying while another change is still pending."""
        while True:
            raw = self.raw
            try:
                index = raw.propose_conf_change(change)
            except ConfChangeRefused as exc:
                if "not committed" not in str(exc) and "not yet committed" not in str(exc) and "behind" not in str(exc):
                    raise
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(self.config.heartbeat)
                continue
            self._wake.set()
            await self.wait_applied(index, raw.raft.term, timeout=max(0.0, deadline - time.monotonic()))
            return

    async def add_member(
        self, node_id: int, address: Address, *, voter: bool = True, timeout: float | None = None
    ) -> None:
        """Add a node: record its address, add it as a learner, and once caught up promote it to voter.

        Any node may be asked; followers pass it to the leader. Already a member: only the missing
        steps are done. Raises ConfChangeRefused when the learner does not catch up in time.
        """
        timeout = self.config.request_timeout * 6 if timeout is None else timeout
        if not self.is_leader:
            await self._call_leader("add_member", _pack([node_id, address[0], address[1], voter]), timeout)
            return
        deadline = time.monotonic() + timeout
        if self._book.get(node_id) != address:
            await self._propose_meta(["addr", node_id, address[0], address[1]], timeout)
        conf = self.raw.raft.conf
        if node_id not in conf.voters and node_id not in conf.learners:
            await self._propose_conf(ConfChange(ConfChangeOp.ADD_LEARNER, node_id), deadline)
        if voter and node_id not in self.raw.raft.conf.voters:
            await self._propose_conf(ConfChange(ConfChangeOp.ADD_VOTER, node_id), deadline)
        logger.info(
            "raft node %d added node %d (%s) at %s:%d",
            self.id,
            node_id,
            "voter" if voter else "learner",
            *address,
            extra={"action": "raft_member_add", "node_id": self.id},
        )

    async def remove_member(self, node_id: int, *, timeout: float | None = None) -> None:
        """Remove a node (the leader too: it steps down once the change commits)."""
        timeout = self.config.request_timeout if timeout is None else timeout
        if not self.is_leader:
            await self._call_leader("remove_member", _pack(node_id), timeout)
            return
        await self._propose_conf(ConfChange(ConfChangeOp.REMOVE, node_id), time.monotonic() + timeout)
        logger.info("raft node %d removed node %d", self.id, node_id, extra={"action": "raft_member_remove"})

    async def transfer_leadership(self, to: int, *, timeout: float | None = None) -> None:
        """Hand leadership to voter `to` and wait until it leads (TransferRefused if it does not)."""
        timeout = self.config.request_timeout if timeout is None else timeout
        if not self.is_leader:
            await self._call_leader("transfer", _pack(to), timeout)
            return
        self.raw.transfer_leadership(to)
        self._wake.set()
        deadline = time.monotonic() + timeout
        while self.leader_id != to:
            if time.monotonic() > deadline:
                raise TransferRefused(f"node {to} did not take over within {timeout:.1f}s")
            await asyncio.sleep(self.config.tick_interval())

    async def _complete_address_book(self) -> None:
        """A new leader records the addresses members advertise, so later joiners can reach them all."""
        await asyncio.sleep(self.config.heartbeat * 2)
        try:
            for member in self._conf.members():
                if member in self._book:
                    continue
                address = self.config.advertised if member == self.id else self._learned.get(member)
                if address is None:
                    continue
                await self._propose_meta(["addr", member, address[0], address[1]], self.config.request_timeout)
        except (NodeError, RaftError, OutcomeUnknown) as exc:
            logger.info("raft node %d: address book not completed: %s", self.id, exc)

    async def _join_loop(self, target: Address) -> None:
        """Ask a running member to add this node until it is one."""
        delay = 0.2
        while self.id not in self.raw.raft.conf.members():
            try:
                reply = await self.transport.call_address(
                    target,
                    "join",
                    _pack([self.id, *self.config.advertised, not self.config.join_as_learner]),
                    timeout=self.config.request_timeout * 6,
                )
            except (TransportError, OSError, TimeoutError) as exc:
                logger.info("raft node %d: join through %s:%d failed: %s", self.id, *target, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            cluster_id, book = _unpack(reply)
            for node_id, host, port in book:
                self._learned.setdefault(int(node_id), (str(host), int(port)))
            if cluster_id and not self.cluster_id:
                self._adopt_cluster_id(str(cluster_id))
            logger.info("raft node %d joined cluster %s", self.id, self.cluster_id, extra={"action": "raft_join"})
            return

    def _adopt_cluster_id(self, cluster_id: str) -> None:
        self.cluster_id = cluster_id
        if self._transport is not None:
            self._transport.cluster_id = cluster_id
        _Identity(Path(self.config.data_dir) / IDENTITY_FILE).save(self.id, cluster_id)

    def _log_bytes(self) -> int:
        return _directory_bytes(Path(self.config.data_dir) / "wal")

    # --- status --------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """What RAFT.STATUS reports: role, term, leader, indexes, peers, log and snapshot."""
        raw = self.raw
        r = raw.raft
        now = time.monotonic()
        peers: dict[str, Any] = {}
        links = self.transport.peers()
        for member in r.conf.members():
            if member == self.id:
                continue
            pr = r.progress.get(member)
            contact = self.transport.last_contact(member)
            link = links.get(member)
            address = self.address_of(member)
            peers[str(member)] = {
                "address": f"{address[0]}:{address[1]}" if address else None,
                "voter": member in r.voters,
                "match_index": pr.match if pr is not None else None,
                "next_index": pr.next if pr is not None else None,
                "last_contact_ms": round((now - contact) * 1000) if contact is not None else None,
                "connected": link.connected if link is not None else False,
                "dropped_messages": link.dropped if link is not None else 0,
            }
        leader_address = self.address_of(r.leader) if r.leader else None
        snap_index, snap_term, snap_bytes = self._snapshot_meta
        return {
            "node_id": self.id,
            "cluster_id": self.cluster_id,
            "role": r.role.name.lower(),
            "term": r.term,
            "vote": r.vote,
            "leader_id": r.leader,
            "leader_address": f"{leader_address[0]}:{leader_address[1]}" if leader_address else None,
            "commit_index": r.log.committed,
            "applied_index": self._applied,
            "first_index": r.log.first_index(),
            "last_index": r.log.last_index(),
            "log_entries": r.log.last_index() - r.log.first_index() + 1,
            "log_bytes": self._log_bytes(),
            "voters": list(r.voters),
            "learners": list(r.learners),
            "peers": peers,
            "snapshot": {"index": snap_index, "term": snap_term, "bytes": snap_bytes} if snap_index else None,
            "timing": {
                "heartbeat_ms": round(self.config.heartbeat * 1000),
                "election_timeout_ms": round(self.config.election_timeout * 1000),
                "tick_lag_max_ms": round(self.stats.tick_lag_max * 1000, 1),
                "ticks_forgiven": self.stats.ticks_forgiven,
                "persist_max_ms": round(self.stats.persist_seconds_max * 1000, 1),
                "direct_heartbeats": self.stats.direct_heartbeats,
            },
            "stats": {
                "readies": self.stats.readies,
                "fsyncs": self.stats.fsyncs,
                "applied_entries": self.stats.applied_entries,
                "leader_changes": self.stats.leader_changes,
                "snapshots_taken": self.stats.snapshots_taken,
                "snapshots_installed": self.stats.snapshots_installed,
                "proposals": self.stats.proposals,
                "forwarded": self.stats.forwarded,
                "auth_failures": self.transport.auth_failures,
            },
        }


def _directory_bytes(path: Path) -> int:
    total = 0
    with contextlib.suppress(OSError), os.scandir(path) as entries:
        for entry in entries:
            with contextlib.suppress(OSError):
                total += entry.stat().st_size
    return total


def _error_from_remote(exc: RemoteError) -> Exception:
    """The exception a remote answer stands for, so a forwarded call fails as a local one would."""
    if exc.code == "not_leader":
        return NotLeader(exc.detail if type(exc.detail) is int else 0)
    if exc.code == "dropped":
        return ProposalDropped(str(exc))
    if exc.code == "conf_refused":
        return ConfChangeRefused(str(exc))
    if exc.code == "transfer_refused":
        return TransferRefused(str(exc))
    if exc.code == "unknown":
        return OutcomeUnknown(str(exc))
    if exc.code in ("unavailable", "busy"):
        return Unavailable(str(exc))
    return exc
