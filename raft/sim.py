"""A deterministic cluster simulator that tries to break the Raft core, and checks it after every step.

N nodes run in one process on virtual time (microseconds), each a RawNode with a MemoryStorage
standing for its disk. One seed decides everything: the cluster's settings, the network (drops,
delays that reorder, duplicates, symmetric and one-way partitions), crashes that lose what was not
persisted, all nodes restarting at once, slow nodes starved of ticks and slow disks, membership
changes (learners, promotions, removing the leader), leadership transfers, compaction, and
clients writing (with request ids, retrying) and reading (ReadIndex).

After every step the checker verifies: at most one leader per term; log matching (an entry at an
index and term is the same everywhere, after the same predecessor); leader completeness (a new
leader holds every committed entry); committed entries never change; state machine safety (no two
nodes apply different entries, or hold different snapshots, at one index); each client request
applied at most once; ReadIndex reads see every write acknowledged before they began. Then faults
heal and it checks liveness: a leader is elected and a proposal commits on every member within a
bounded virtual time, and every acknowledged write is in the final state exactly once.

    python -m raft.sim run --seed 42            # one seed; --trace prints every event
    python -m raft.sim sweep --seeds 500 --jobs 2

A failing seed prints the one command line that replays it exactly.
"""

from __future__ import annotations

import argparse
import heapq
import os
import random
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import msgpack

from raft.core import (
    ClientSessions,
    ConfChange,
    ConfChangeOp,
    Config,
    Entry,
    EntryKind,
    Message,
    MessageType,
    Mutation,
    NotLeader,
    RaftError,
    RawNode,
    Ready,
    Role,
    Verdict,
    bootstrap_state,
    decode_message,
    encode_message,
)
from raft.core.errors import InvariantViolated
from raft.storage import MemoryStorage

MS = 1000  # virtual time is in microseconds
TICK_US = 10 * MS
DEFAULT_STEPS = 3000
LIVENESS_BOUND_US = 6_000 * MS  # after healing: a leader and a commit on every member within this
CLIENT_TIMEOUT_US = 400 * MS

# Event kinds, ordered by (time, sequence) in one heap.
EV_TICK = 0
EV_DELIVER = 1
EV_PERSISTED = 2
EV_CLIENT = 3
EV_FAULT = 4
EV_RESTART = 5
EV_HEAL = 6
EV_CLIENT_TIMEOUT = 7


class Violation(Exception):
    """A safety or liveness property does not hold."""


# --- the replicated state machine used by the simulation -----------------------------------------


class KVStore:
    """Keys hold lists of appended values; each client request is applied at most once."""

    def __init__(self, *, dedup: bool) -> None:
        self.dedup = dedup
        self.data: dict[str, list[int]] = {}
        self.sessions = ClientSessions(dedup=dedup)
        self.applied = 0

    def apply(self, entry: Entry) -> tuple[bool, bytes]:
        """Apply one committed entry; returns (applied now, response)."""
        self.applied = entry.index
        if entry.kind != EntryKind.NORMAL or not entry.data:
            return False, b""
        check = self.sessions.check(entry.client_id, entry.seq)
        if check.verdict != Verdict.NEW:
            return False, check.response
        key, value = msgpack.unpackb(entry.data)
        values = self.data.setdefault(key, [])
        if value in values:
            raise Violation(f"request {entry.client_id}#{entry.seq} (value {value}) applied twice at {entry.index}")
        values.append(value)
        response = str(len(values)).encode()
        self.sessions.record(entry.client_id, entry.seq, response)
        return True, response

    def snapshot(self) -> bytes:
        return msgpack.packb([self.applied, self.data, self.sessions.to_bytes()])  # type: ignore[no-any-return]

    def restore(self, data: bytes) -> None:
        applied, kv, sessions = msgpack.unpackb(data, raw=False, strict_map_key=False)
        self.applied = applied
        self.data = {k: list(v) for k, v in kv.items()}
        self.sessions = ClientSessions.from_bytes(sessions, dedup=self.dedup)


# --- the simulated world ---------------------------------------------------------------------------


@dataclass
class Profile:
    """Everything the seed decides about a run (printed with --trace)."""

    voters: int
    spares: int
    pre_vote: bool
    check_quorum: bool
    max_msg_bytes: int
    max_inflight: int
    snapshot_chunk: int
    compact_every: int
    membership: bool
    codec: bool
    fault_gap_us: int
    drop: float
    duplicate: float
    clients: int
    keys: int
    churn: float  # chance that a new leader crashes within a few milliseconds (Figure 8 schedules)
    crash_before_send: float  # chance, per Ready, of crashing after persisting it but before sending
    # Leaders send a Ready's messages before persisting it when they may (thesis 10.2.1), as
    # raft.node does. Set from the seed's parity, not drawn, so both ways run in every sweep.
    early_send: bool = False

    @classmethod
    def from_rng(cls, rng: random.Random) -> Profile:
        if rng.random() < 0.2:
            # Leader churn on a small cluster, one entry per message, no pre-vote: the schedules of
            # Figure 8, where only the current-term rule keeps an old entry from counting as committed.
            return cls(
                voters=3,
                spares=0,
                pre_vote=False,
                check_quorum=False,
                max_msg_bytes=0,
                max_inflight=4,
                snapshot_chunk=64,
                compact_every=60,
                membership=False,
                codec=rng.random() < 0.25,
                fault_gap_us=rng.choice([150, 300]) * MS,
                drop=0.05,
                duplicate=0.0,
                clients=3,
                keys=2,
                churn=0.6,
                crash_before_send=rng.choice([0.01, 0.03]),
            )
        return cls(
            voters=rng.choice([3, 3, 5]),
            spares=rng.choice([0, 1, 2]),
            pre_vote=rng.random() < 0.8,
            check_quorum=rng.random() < 0.75,
            max_msg_bytes=rng.choice([0, 0, 80, 4096]),
            max_inflight=rng.choice([1, 4, 64]),
            snapshot_chunk=rng.choice([16, 64, 1024]),
            compact_every=rng.choice([6, 20, 60]),
            membership=rng.random() < 0.5,
            codec=rng.random() < 0.25,
            fault_gap_us=rng.choice([150, 300, 600]) * MS,
            drop=rng.choice([0.0, 0.01, 0.05]),
            duplicate=rng.choice([0.0, 0.02]),
            clients=rng.choice([2, 3, 4]),
            keys=rng.choice([2, 4]),
            churn=rng.choice([0.0, 0.0, 0.3, 0.6]),
            crash_before_send=rng.choice([0.0, 0.0, 0.01, 0.04]),
        )


@dataclass
class SimNode:
    id: int
    storage: MemoryStorage
    core: RawNode | None = None
    kv: KVStore | None = None
    persisting: Ready | None = None
    incarnation: int = 0
    slow: int = 1  # tick interval and disk latency multiplier
    read_waiting: list[tuple[int, bytes]] = field(default_factory=list)  # ReadStates not yet applied
    seen_commit: int = 0
    seen_leader_term: int = 0


@dataclass
class ClientOp:
    kind: str  # "write" or "read"
    key: str
    value: int
    seq: int
    context: bytes
    node: int
    invoked_at: int
    min_index: int  # reads: the highest committed index when the read began
    must_see: int  # reads: the latest write to `key` acknowledged before it began (0: none)
    attempt: int


@dataclass
class SimClient:
    id: str
    seq: int = 0
    op: ClientOp | None = None
    leader_hint: int = 0
    reads: int = 0


@dataclass
class Stats:
    steps: int = 0
    virtual_ms: int = 0
    leaders: int = 0
    writes_acked: int = 0
    reads_ok: int = 0
    crashes: int = 0
    all_restarts: int = 0
    partitions: int = 0
    snapshots_installed: int = 0
    snapshot_chunks: int = 0
    compactions: int = 0
    conf_changes: int = 0
    leader_removed: int = 0
    transfers: int = 0
    messages: int = 0
    dropped: int = 0
    duplicate_requests: int = 0

    def add(self, other: Stats) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass
class Result:
    seed: int
    ok: bool
    error: str
    stats: Stats
    command: str


def replay_command(seed: int, steps: int, mutation: Mutation) -> str:
    command = f"python -m raft.sim run --seed {seed} --steps {steps}"
    if mutation != Mutation.NONE:
        command += f" --mutation {mutation.value}"
    return command


class Checker:
    """The safety properties, checked incrementally so each step costs O(what changed).

    `commit_rule` also checks the rule behind them, that a leader's commit index only ever moves
    onto an entry of its own term; without it only the consequences of breaking it are checked.
    """

    def __init__(self, *, commit_rule: bool = True) -> None:
        self.commit_rule = commit_rule
        self.leader_of_term: dict[int, int] = {}
        self.committed: dict[int, Entry] = {}
        self.max_committed = 0
        self.entry_at: dict[tuple[int, int], tuple[Entry, int]] = {}  # (index, term) -> (entry, term before it)
        self.applied: dict[int, Entry] = {}
        self.snapshots: dict[int, bytes] = {}
        self.acked: dict[str, list[tuple[int, int]]] = {}  # key -> [(value, acked at)], in ack order
        self.acked_values: set[int] = set()
        self.new_leaders = 0

    def leader(self, node: SimNode, core: RawNode) -> None:
        r = core.raft
        holder = self.leader_of_term.setdefault(r.term, node.id)
        if holder == node.id and node.seen_leader_term != r.term:
            self.new_leaders += 1
        if holder != node.id:
            raise Violation(f"two leaders in term {r.term}: {holder} and {node.id}")
        if node.seen_leader_term == r.term:
            return
        node.seen_leader_term = r.term
        # Leader completeness: the new leader holds the latest committed entry (hence all before it).
        index = self.max_committed
        if index > r.log.snapshot.index:
            term = r.log.term(index)
            if term != self.committed[index].term:
                raise Violation(
                    f"leader {node.id} of term {r.term} lacks committed entry {index} "
                    f"(term {self.committed[index].term}, it has {term})"
                )

    def commit(self, node: SimNode, core: RawNode) -> None:
        r = core.raft
        log = r.log
        if (
            self.commit_rule
            and r.role == Role.LEADER
            and node.seen_leader_term == r.term
            and node.seen_commit
            and log.committed > node.seen_commit
            and log.term(log.committed) != r.term
        ):
            # Raft commits entries of earlier terms only by committing one of its own term (5.4.2, Figure 8).
            raise Violation(
                f"leader {node.id} of term {r.term} counted replicas to commit entry {log.committed} "
                f"of term {log.term(log.committed)}"
            )
        start = max(node.seen_commit, log.snapshot.index)
        for index in range(start + 1, log.committed + 1):
            entry = log.entry(index)
            known = self.committed.setdefault(index, entry)
            if known != entry:
                raise Violation(f"committed entry {index} changed: {known} then {entry} on node {node.id}")
        node.seen_commit = log.committed
        self.max_committed = max(self.max_committed, log.committed)

    def persisted(self, node: SimNode, entries: list[Entry]) -> None:
        """Log matching, on what reached the node's disk."""
        storage = node.storage
        prev_term = -1
        for entry in entries:
            if prev_term < 0:
                prev_term = _stored_term(storage, entry.index - 1)
            key = (entry.index, entry.term)
            known = self.entry_at.setdefault(key, (entry, prev_term))
            if known != (entry, prev_term):
                raise Violation(
                    f"log matching: node {node.id} stored {entry} after term {prev_term}, "
                    f"elsewhere {known[0]} after term {known[1]}"
                )
            prev_term = entry.term

    def apply(self, node: SimNode, entry: Entry) -> None:
        known = self.applied.setdefault(entry.index, entry)
        if known != entry:
            raise Violation(f"state machine safety: node {node.id} applied {entry} where another applied {known}")
        committed = self.committed.get(entry.index)
        if committed is not None and committed != entry:
            raise Violation(f"node {node.id} applied {entry} but {committed} was committed")

    def snapshot(self, node: SimNode, index: int, data: bytes) -> None:
        known = self.snapshots.setdefault(index, data)
        if known != data:
            raise Violation(f"node {node.id} holds a snapshot at {index} that differs from another node's")

    def ack(self, key: str, value: int, now: int) -> None:
        self.acked.setdefault(key, []).append((value, now))
        self.acked_values.add(value)

    def latest_acked(self, key: str) -> int:
        acked = self.acked.get(key)
        return acked[-1][0] if acked else 0


def _stored_term(storage: MemoryStorage, index: int) -> int:
    snap = storage.snapshot()
    if snap is not None and snap.meta.index == index:
        return snap.meta.term
    entries = storage._entries  # the simulator's own storage: reading it directly keeps checks cheap
    if entries:
        offset = index - entries[0].index
        if 0 <= offset < len(entries):
            return entries[offset].term
    return 0 if index == 0 else -2


class Simulation:
    """One seeded run: a fault phase of `steps` events, then healing and the liveness checks."""

    def __init__(
        self,
        seed: int,
        *,
        steps: int = DEFAULT_STEPS,
        mutation: Mutation = Mutation.NONE,
        trace: Callable[[str], None] | None = None,
    ) -> None:
        self.seed = seed
        self.steps = steps
        self.mutation = mutation
        self.trace = trace
        self.rng = random.Random(seed)
        self.profile = Profile.from_rng(self.rng)
        self.profile.early_send = seed % 2 == 1
        self.now = 0
        self.queue: list[tuple[int, int, int, Any]] = []
        self.seq = 0
        self.stats = Stats()
        self.checker = Checker()
        self.blocked: set[tuple[int, int]] = set()
        self.drop = self.profile.drop
        self.duplicate = self.profile.duplicate
        self.healed = False
        p = self.profile
        ids = list(range(1, p.voters + p.spares + 1))
        founders = ids[: p.voters]
        self.nodes: dict[int, SimNode] = {}
        for node_id in ids:
            storage = MemoryStorage()
            if node_id in founders:
                storage.initialize(bootstrap_state(founders))
            self.nodes[node_id] = SimNode(node_id, storage)
        self.clients = [SimClient(f"c{i}") for i in range(1, p.clients + 1)]
        self._handlers: dict[int, Callable[[Any], None]] = {
            EV_TICK: self._on_tick,
            EV_DELIVER: self._deliver,
            EV_PERSISTED: self._on_persisted,
            EV_CLIENT: self._client_act,
            EV_CLIENT_TIMEOUT: self._on_client_timeout,
            EV_FAULT: self._on_fault,
            EV_RESTART: self._on_restart,
            EV_HEAL: lambda heal: heal(),
        }
        self.keys = [f"k{i}" for i in range(p.keys)]
        self.next_value = 1

    # --- plumbing ----------------------------------------------------------------------------------

    def _at(self, when: int, kind: int, payload: Any) -> None:
        self.seq += 1
        heapq.heappush(self.queue, (when, self.seq, kind, payload))

    def _log(self, text: str) -> None:
        if self.trace is not None:
            self.trace(f"{self.now / MS:10.3f}ms {text}")

    def _config(self, node_id: int) -> Config:
        p = self.profile
        return Config(
            id=node_id,
            election_ticks=10,
            heartbeat_ticks=2,
            pre_vote=p.pre_vote,
            check_quorum=p.check_quorum,
            max_msg_bytes=p.max_msg_bytes,
            max_inflight_msgs=p.max_inflight,
            max_inflight_bytes=max(p.max_msg_bytes, 1) * 64,
            snapshot_chunk_bytes=p.snapshot_chunk,
            snapshot_inflight_chunks=2,
            learner_catch_up_entries=10,
            mutation=self.mutation,
        )

    def _start(self, node: SimNode) -> None:
        state = node.storage.load()
        rng = random.Random(self.rng.getrandbits(64))
        node.core = RawNode(self._config(node.id), rng=rng, state=state)
        node.kv = KVStore(dedup=self.mutation != Mutation.NO_DEDUP)
        if state.snapshot is not None:
            node.kv.restore(state.snapshot.data)
        node.persisting = None
        node.read_waiting = []
        node.seen_commit = 0
        node.seen_leader_term = 0
        node.incarnation += 1
        self._at(self.now + self.rng.randrange(TICK_US), EV_TICK, (node.id, node.incarnation))
        self._log(f"start {node.id} from hard state {state.hard_state}, {len(state.entries)} entries")

    def _crash(self, node: SimNode) -> None:
        if node.core is None:
            return
        self._log(f"crash {node.id} (losing {'a Ready being persisted' if node.persisting else 'nothing unsaved'})")
        node.core = None
        node.kv = None
        node.persisting = None
        node.incarnation += 1
        self.stats.crashes += 1

    # --- running -------------------------------------------------------------------------------------

    def run(self) -> Result:
        try:
            self._run()
        except (Violation, InvariantViolated) as exc:
            self.stats.virtual_ms = self.now // MS
            self.stats.leaders = self.checker.new_leaders
            return Result(self.seed, False, f"{type(exc).__name__}: {exc}", self.stats, self.command())
        self.stats.virtual_ms = self.now // MS
        self.stats.leaders = self.checker.new_leaders
        return Result(self.seed, True, "", self.stats, self.command())

    def command(self) -> str:
        return replay_command(self.seed, self.steps, self.mutation)

    def _run(self) -> None:
        for node in self.nodes.values():
            self._start(node)
        for client in self.clients:
            self._at(self.rng.randrange(20 * MS), EV_CLIENT, client)
        self._at(self.profile.fault_gap_us, EV_FAULT, None)
        while self.stats.steps < self.steps:
            self._step()
        self._heal()
        self._liveness()

    def _step(self) -> None:
        when, _, kind, payload = heapq.heappop(self.queue)
        self.now = when
        self.stats.steps += 1
        self._handlers[kind](payload)

    def _on_tick(self, payload: tuple[int, int]) -> None:
        node = self.nodes[payload[0]]
        if node.core is None or node.incarnation != payload[1]:
            return
        node.core.tick()
        jitter = self.rng.randrange(TICK_US // 10)
        self._at(self.now + TICK_US * node.slow + jitter, EV_TICK, payload)
        self._after_input(node)

    def _on_persisted(self, payload: tuple[int, int]) -> None:
        node = self.nodes[payload[0]]
        if node.core is not None and node.incarnation == payload[1]:
            self._finish_ready(node)

    def _on_client_timeout(self, payload: tuple[SimClient, int]) -> None:
        client, attempt = payload
        if client.op is not None and client.op.attempt == attempt:
            self._log(f"client {client.id} times out on {client.op.kind} at node {client.op.node}")
            self._client_retry(client)

    def _on_fault(self, payload: tuple[str, int, int] | None) -> None:
        if self.healed:
            return
        if payload is None:
            self._fault()
            self._at(self.now + 1 + int(self.rng.expovariate(1 / self.profile.fault_gap_us)), EV_FAULT, None)
            return
        _, node_id, incarnation = payload  # churn: a new leader dies or is cut off
        node = self.nodes[node_id]
        if node.incarnation != incarnation:
            return
        if self.rng.random() < 0.5:
            self._crash(node)
            self._at(self.now + self.rng.randrange(5 * MS, 300 * MS), EV_RESTART, node.id)
        else:
            self._isolate(node_id, self.rng.randrange(20 * MS, 300 * MS))

    def _on_restart(self, node_id: int) -> None:
        node = self.nodes[node_id]
        if node.core is None:
            self._start(node)
            self._after_input(node)

    def _after_input(self, node: SimNode) -> None:
        """Check what changed on the node, then start persisting its next Ready if none is in progress."""
        core = node.core
        if core is None:
            return
        r = core.raft
        if r.role == Role.LEADER:
            if node.seen_leader_term != r.term and not self.healed and self.rng.random() < self.profile.churn:
                # A leader that dies while it is still bringing followers up to date (Figure 8 of the paper).
                early = self.rng.random() < 0.5  # before it replicated anything, or while catching followers up
                delay = self.rng.randrange(100, 1500) if early else self.rng.randrange(1 * MS, 15 * MS)
                self._at(self.now + delay, EV_FAULT, ("churn", node.id, node.incarnation))
            if node.seen_leader_term != r.term:
                self._log(f"node {node.id} leads term {r.term} (last index {r.log.last_index()})")
            self.checker.leader(node, core)
        if r.log.committed > node.seen_commit:
            self.checker.commit(node, core)
        if node.persisting is not None or not core.has_ready():
            return
        rd = core.ready()
        node.persisting = rd
        if self.profile.early_send:
            for m in rd.take_early_messages():
                self._send(m)
        if rd.must_sync:
            latency = (200 + self.rng.randrange(1500)) * node.slow
            self._at(self.now + latency, EV_PERSISTED, (node.id, node.incarnation))
        else:
            self._finish_ready(node)

    def _finish_ready(self, node: SimNode) -> None:
        rd = node.persisting
        core, kv = node.core, node.kv
        assert rd is not None
        assert core is not None
        assert kv is not None
        node.storage.persist(rd)
        if rd.entries:
            self.checker.persisted(node, rd.entries)
        if not self.healed and self.rng.random() < self.profile.crash_before_send:
            self._crash(node)  # the fsync returned, then the power went: nothing was sent
            self._at(self.now + self.rng.randrange(5 * MS, 300 * MS), EV_RESTART, node.id)
            return
        for m in rd.messages:
            self._send(m)
        if rd.snapshot is not None:
            kv.restore(rd.snapshot.data)
            self.checker.snapshot(node, rd.snapshot.meta.index, rd.snapshot.data)
            self.stats.snapshots_installed += 1
            self._log(f"node {node.id} installs snapshot {rd.snapshot.meta.index}/{rd.snapshot.meta.term}")
        for entry in rd.committed_entries:
            self.checker.apply(node, entry)
            fresh, _ = kv.apply(entry)
            if entry.client_id:
                self._client_applied(node, entry, fresh)
        node.read_waiting.extend(rd.read_states)
        if node.read_waiting:
            self._serve_reads(node)
        node.persisting = None
        core.advance(rd)
        self._maybe_compact(node)
        self._after_input(node)

    def _maybe_compact(self, node: SimNode) -> None:
        core, kv = node.core, node.kv
        assert core is not None
        assert kv is not None
        log = core.raft.log
        if log.applied - log.snapshot.index < self.profile.compact_every:
            return
        data = kv.snapshot()
        snapshot = core.compact(log.applied, data)
        self.checker.snapshot(node, snapshot.meta.index, data)
        node.storage.save_snapshot(snapshot)
        node.storage.compact(snapshot.meta.index)
        self.stats.compactions += 1

    # --- network -------------------------------------------------------------------------------------

    def _send(self, m: Message) -> None:
        self.stats.messages += 1
        if m.type == MessageType.SNAPSHOT:
            self.stats.snapshot_chunks += 1
        if self.rng.random() < self.drop:
            self.stats.dropped += 1
            return
        copies = 2 if self.rng.random() < self.duplicate else 1
        for _ in range(copies):
            delay = 300 + self.rng.randrange(4 * MS)
            if self.rng.random() < 0.05:
                delay += self.rng.randrange(60 * MS)  # a straggler, overtaken by later messages
            delay *= self.nodes[m.dst].slow if m.dst in self.nodes else 1
            self._at(self.now + delay, EV_DELIVER, m)

    def _deliver(self, m: Message) -> None:
        node = self.nodes.get(m.dst)
        if node is None or node.core is None:
            return
        if (m.src, m.dst) in self.blocked:
            self.stats.dropped += 1
            return
        if self.profile.codec:
            m = decode_message(encode_message(m))
        node.core.step(m)
        self._after_input(node)

    # --- clients -------------------------------------------------------------------------------------

    def _pick_node(self, client: SimClient) -> SimNode:
        hint = self.nodes.get(client.leader_hint)
        if hint is not None and hint.core is not None and self.rng.random() < 0.8:
            return hint
        return self.nodes[self.rng.choice(sorted(self.nodes))]

    def _client_act(self, client: SimClient) -> None:
        if client.op is None:
            if self.healed:
                return  # after healing, clients only finish what they started
            key = self.rng.choice(self.keys)
            if self.rng.random() < 0.7:
                client.seq += 1
                value = self.next_value
                self.next_value += 1
                client.op = ClientOp("write", key, value, client.seq, b"", 0, self.now, 0, 0, 0)
            else:
                client.reads += 1
                client.op = ClientOp(
                    "read", key, 0, 0, b"", 0, self.now, self.checker.max_committed, self.checker.latest_acked(key), 0
                )
        self._client_submit(client)

    def _client_submit(self, client: SimClient) -> None:
        op = client.op
        assert op is not None
        op.attempt += 1
        node = self._pick_node(client)
        op.node = node.id
        core = node.core
        self._at(self.now + CLIENT_TIMEOUT_US, EV_CLIENT_TIMEOUT, (client, op.attempt))
        if core is None:
            return
        try:
            if op.kind == "write":
                data = msgpack.packb([op.key, op.value])
                core.propose(data, client_id=client.id, seq=op.seq)
            else:
                op.context = f"{client.id}:{client.reads}:{op.attempt}".encode()
                core.read_index(op.context)
        except NotLeader as exc:
            client.leader_hint = exc.leader
            self._client_retry(client, soon=True)
            return
        except RaftError:
            self._client_retry(client, soon=True)
            return
        self._after_input(node)

    def _client_retry(self, client: SimClient, *, soon: bool = False) -> None:
        op = client.op
        assert op is not None
        op.attempt += 1  # invalidate the pending timeout
        self._at(self.now + (2 * MS if soon else 0) + self.rng.randrange(5 * MS), EV_CLIENT, client)
        if op.kind == "write" and not soon:
            self.stats.duplicate_requests += 1

    def _client_applied(self, node: SimNode, entry: Entry, fresh: bool) -> None:
        for client in self.clients:
            op = client.op
            if (
                client.id == entry.client_id
                and op is not None
                and op.kind == "write"
                and op.seq == entry.seq
                and op.node == node.id
            ):
                self.checker.ack(op.key, op.value, self.now)
                self.stats.writes_acked += 1
                client.leader_hint = node.core.raft.leader if node.core is not None else 0
                client.op = None
                self._at(self.now + self.rng.randrange(15 * MS), EV_CLIENT, client)
                return

    def _serve_reads(self, node: SimNode) -> None:
        kv = node.kv
        assert kv is not None
        waiting = []
        for index, context in node.read_waiting:
            if kv.applied < index:
                waiting.append((index, context))
                continue
            for client in self.clients:
                op = client.op
                if op is not None and op.kind == "read" and op.context == context and op.node == node.id:
                    self._check_read(client, op, index, kv)
                    client.op = None
                    self._at(self.now + self.rng.randrange(15 * MS), EV_CLIENT, client)
        node.read_waiting = waiting

    def _check_read(self, client: SimClient, op: ClientOp, index: int, kv: KVStore) -> None:
        if index < op.min_index:
            raise Violation(
                f"stale read: {client.id} read {op.key} at index {index} on node {op.node}, "
                f"but {op.min_index} was committed before the read began"
            )
        if op.must_see and op.must_see not in kv.data.get(op.key, []):
            raise Violation(
                f"stale read: {client.id} read {op.key} on node {op.node} without write {op.must_see} "
                "acknowledged before the read began"
            )
        self.stats.reads_ok += 1

    # --- faults ------------------------------------------------------------------------------------

    def _fault(self) -> None:
        faults: list[tuple[Callable[[], None], int]] = [
            (self._fault_crash, 10),
            (self._fault_crash_leader, 8),
            (self._fault_restart_all, 3),
            (self._fault_partition, 6),
            (self._fault_isolate_leader, 6),
            (self._fault_one_way, 4),
            (self._fault_slow, 5),
            (self._fault_network, 4),
            (self._fault_membership, 8 if self.profile.membership else 0),
            (self._fault_transfer, 3),
        ]
        fault = self.rng.choices([f for f, _ in faults], weights=[w for _, w in faults])[0]
        fault()

    def _crash_for_a_while(self, node: SimNode, shortest: int, longest: int) -> None:
        self._crash(node)
        self._at(self.now + self.rng.randrange(shortest, longest), EV_RESTART, node.id)

    def _fault_crash(self) -> None:
        live = [n for n in self.nodes.values() if n.core is not None]
        if live:
            self._crash_for_a_while(self.rng.choice(live), 20 * MS, 600 * MS)

    def _fault_crash_leader(self) -> None:
        leader = self._current_leader()
        if leader is not None:
            self._crash_for_a_while(leader, 20 * MS, 600 * MS)

    def _fault_restart_all(self) -> None:
        self.stats.all_restarts += 1
        self._log("all nodes crash at once")
        for node in self.nodes.values():
            self._crash_for_a_while(node, 10 * MS, 200 * MS)

    def _block(self, kind: str, pairs: set[tuple[int, int]]) -> None:
        self.stats.partitions += 1
        self._log(f"{kind}: block {sorted(pairs)}")
        self.blocked |= pairs

        def heal_partition(pairs: set[tuple[int, int]] = pairs) -> None:
            self.blocked -= pairs

        self._at(self.now + self.rng.randrange(50 * MS, 800 * MS), EV_HEAL, heal_partition)

    def _fault_partition(self) -> None:
        ids = sorted(self.nodes)
        side = set(self.rng.sample(ids, self.rng.randrange(1, len(ids))))
        self._block("partition", {(a, b) for a in ids for b in ids if (a in side) != (b in side)})

    def _fault_isolate_leader(self) -> None:
        leader = self._current_leader()
        if leader is not None:
            others = [o for o in self.nodes if o != leader.id]
            self._block("isolate leader", {(leader.id, o) for o in others} | {(o, leader.id) for o in others})

    def _fault_one_way(self) -> None:
        ids = sorted(self.nodes)
        pairs: set[tuple[int, int]] = set()
        for _ in range(self.rng.randrange(1, 4)):
            a, b = self.rng.sample(ids, 2)
            pairs.add((a, b))
        self._block("one-way", pairs)

    def _fault_slow(self) -> None:
        live = [n for n in self.nodes.values() if n.core is not None]
        if not live:
            return
        target = self.rng.choice(live)
        target.slow = self.rng.choice([3, 6, 12])
        self._log(f"node {target.id} slows down x{target.slow}")

        def unslow(node: SimNode = target) -> None:
            node.slow = 1

        self._at(self.now + self.rng.randrange(100 * MS, 1000 * MS), EV_HEAL, unslow)

    def _fault_network(self) -> None:
        self.drop = self.rng.choice([0.0, 0.05, 0.2, 0.5])
        self.duplicate = self.rng.choice([0.0, 0.05, 0.2])
        self._log(f"network: drop {self.drop}, duplicate {self.duplicate}")

        def calm() -> None:
            self.drop, self.duplicate = self.profile.drop, self.profile.duplicate

        self._at(self.now + self.rng.randrange(50 * MS, 500 * MS), EV_HEAL, calm)

    def _fault_transfer(self) -> None:
        leader = self._current_leader()
        if leader is None or leader.core is None:
            return
        voters = sorted(v for v in leader.core.raft.voters if v != leader.id)
        if voters:
            self.stats.transfers += 1
            target_id = self.rng.choice(voters)
            self._log(f"transfer leadership {leader.id} -> {target_id}")
            leader.core.transfer_leadership(target_id)
            self._after_input(leader)

    def _isolate(self, node_id: int, duration: int) -> None:
        others = [o for o in self.nodes if o != node_id]
        pairs = {(node_id, o) for o in others} | {(o, node_id) for o in others}
        self._log(f"isolate {node_id} for {duration / MS:.1f}ms")
        self.blocked |= pairs
        self.stats.partitions += 1

        def heal_partition(pairs: set[tuple[int, int]] = pairs) -> None:
            self.blocked -= pairs

        self._at(self.now + duration, EV_HEAL, heal_partition)

    def _current_leader(self) -> SimNode | None:
        best: SimNode | None = None
        for node in self.nodes.values():
            core = node.core
            if (
                core is not None
                and core.raft.role == Role.LEADER
                and (best is None or (best.core is not None and core.raft.term > best.core.raft.term))
            ):
                best = node
        return best

    def _fault_membership(self) -> None:
        leader = self._current_leader()
        if leader is None or leader.core is None:
            return
        core = leader.core
        r = core.raft
        voters, learners = sorted(r.voters), sorted(r.learners)
        others = [n for n in sorted(self.nodes) if n not in voters and n not in learners]
        options: list[ConfChange] = []
        if others:
            options.append(ConfChange(ConfChangeOp.ADD_LEARNER, self.rng.choice(others)))
        if learners and len(voters) < 5:
            options.append(ConfChange(ConfChangeOp.ADD_VOTER, self.rng.choice(learners)))
        if len(voters) > 2:
            options.append(ConfChange(ConfChangeOp.REMOVE, self.rng.choice(voters)))
            options.append(ConfChange(ConfChangeOp.REMOVE, leader.id))
        if learners:
            options.append(ConfChange(ConfChangeOp.REMOVE, self.rng.choice(learners)))
        if not options:
            return
        change = self.rng.choice(options)
        try:
            core.propose_conf_change(change)
        except RaftError as exc:
            self._log(f"conf change {change.op.name} {change.node_id} refused: {exc}")
            return
        self.stats.conf_changes += 1
        if change.op == ConfChangeOp.REMOVE and change.node_id == leader.id:
            self.stats.leader_removed += 1
        self._log(f"conf change {change.op.name} {change.node_id} proposed by {leader.id}")
        self._after_input(leader)

    # --- healing and liveness ------------------------------------------------------------------------

    def _heal(self) -> None:
        self.healed = True
        self.blocked = set()
        self.drop = self.duplicate = 0.0
        self._log("heal: every node up, no partitions, no drops")
        for node in self.nodes.values():
            node.slow = 1
            if node.core is None:
                self._start(node)
                self._after_input(node)

    def _run_until(self, deadline: int, done: Callable[[], bool]) -> bool:
        while self.queue and self.queue[0][0] <= deadline:
            if done():
                return True
            self._step()
        return done()

    def _liveness(self) -> None:
        deadline = self.now + LIVENESS_BOUND_US
        # Phase 1: some member leads, and commits a probe that every member applies.
        probe_index = 0

        def probe_committed() -> bool:
            nonlocal probe_index
            leader = self._current_leader()
            if leader is None or leader.core is None:
                return False
            r = leader.core.raft
            if leader.id not in r.voters or r.log.term(r.log.committed) != r.term:
                return False
            if probe_index == 0 or r.log.term(probe_index) is None:
                try:
                    probe_index = leader.core.propose(b"", client_id="", seq=0) or 0
                except RaftError:
                    return False
                self._after_input(leader)
                return False
            return self._members_applied(leader, probe_index)

        if not self._run_until(deadline, probe_committed):
            leader = self._current_leader()
            raise Violation(
                f"liveness: no leader committed a proposal on every member within {LIVENESS_BOUND_US // MS}ms "
                f"of healing (leader now: {leader.id if leader else None})"
            )
        # Phase 2: clients finish what they started; their writes get acknowledged.
        if not self._run_until(deadline, lambda: all(c.op is None or c.op.kind == "read" for c in self.clients)):
            raise Violation(f"liveness: client writes still pending {LIVENESS_BOUND_US // MS}ms after healing")
        self._final_state()

    def _members_applied(self, leader: SimNode, index: int) -> bool:
        assert leader.core is not None
        r = leader.core.raft
        for member in (*r.voters, *r.learners):
            node = self.nodes[member]
            if node.kv is None or node.kv.applied < index:
                return False
        return True

    def _final_state(self) -> None:
        """Every member holds the same state, containing each acknowledged write exactly once."""
        leader = self._current_leader()
        assert leader is not None
        assert leader.core is not None
        r = leader.core.raft
        target = r.log.committed
        if not self._run_until(self.now + LIVENESS_BOUND_US, lambda: self._members_applied(leader, target)):
            raise Violation("liveness: members did not converge after healing")
        members = sorted((*r.voters, *r.learners))

        def converged() -> bool:
            last = r.log.last_index()
            return r.log.committed == last and all(
                (kv := self.nodes[m].kv) is not None and kv.applied == last for m in members
            )

        if not self._run_until(self.now + LIVENESS_BOUND_US, converged):
            raise Violation("liveness: members did not apply the whole log after healing")
        reference = self.nodes[members[0]].kv.data  # type: ignore[union-attr]
        for member in members[1:]:
            if self.nodes[member].kv.data != reference:  # type: ignore[union-attr]
                raise Violation(f"members {members[0]} and {member} hold different states at the same index")
        present = [v for values in reference.values() for v in values]
        if len(present) != len(set(present)):
            raise Violation("a write appears twice in the final state")
        missing = self.checker.acked_values - set(present)
        if missing:
            raise Violation(f"acknowledged writes lost: {sorted(missing)[:10]}")


# --- command line ----------------------------------------------------------------------------------


def _out(*parts: object) -> None:
    sys.stdout.write(" ".join(str(p) for p in parts) + "\n")
    sys.stdout.flush()


def run_seed(seed: int, steps: int = DEFAULT_STEPS, mutation: Mutation = Mutation.NONE) -> Result:
    return Simulation(seed, steps=steps, mutation=mutation).run()


def _run_chunk(args: tuple[list[int], int, str, bool]) -> list[Result]:
    seeds, steps, mutation, stop = args
    results = []
    for seed in seeds:
        result = run_seed(seed, steps, Mutation(mutation))
        results.append(result)
        if stop and not result.ok:
            break
    return results


def sweep(
    seeds: range,
    *,
    steps: int = DEFAULT_STEPS,
    mutation: Mutation = Mutation.NONE,
    jobs: int = 1,
    stop_on_failure: bool = False,
) -> list[Result]:
    """Run many seeds, in `jobs` processes; each process takes interleaved seeds."""
    seed_list = list(seeds)
    if jobs <= 1:
        return _run_chunk((seed_list, steps, mutation.value, stop_on_failure))
    chunks = [(seed_list[i::jobs], steps, mutation.value, stop_on_failure) for i in range(jobs)]
    results: list[Result] = []
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        for part in pool.map(_run_chunk, chunks):
            results.extend(part)
    return sorted(results, key=lambda r: r.seed)


def _main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m raft.sim", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run one seed")
    run.add_argument("--seed", type=int, required=True)
    run.add_argument("--trace", action="store_true", help="print every fault, crash and decision")
    sw = sub.add_parser("sweep", help="run many seeds")
    sw.add_argument("--seeds", type=int, default=500, help="how many seeds")
    sw.add_argument("--start", type=int, default=0, help="first seed")
    sw.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    sw.add_argument("--stop-on-failure", action="store_true")
    for p in (run, sw):
        p.add_argument("--steps", type=int, default=DEFAULT_STEPS, help="events in the fault phase")
        p.add_argument("--mutation", default="none", choices=[m.value for m in Mutation], help="a deliberate bug")
    args = parser.parse_args(argv)
    mutation = Mutation(args.mutation)
    if args.command == "run":
        trace = print if args.trace else None
        sim = Simulation(args.seed, steps=args.steps, mutation=mutation, trace=trace)
        if args.trace:
            _out(f"profile: {sim.profile}")
        result = sim.run()
        _out(f"seed {args.seed}: {'ok' if result.ok else 'FAIL ' + result.error}")
        _out(f"stats: {result.stats}")
        return 0 if result.ok else 1
    started = time.monotonic()
    results = sweep(
        range(args.start, args.start + args.seeds),
        steps=args.steps,
        mutation=mutation,
        jobs=args.jobs,
        stop_on_failure=args.stop_on_failure,
    )
    elapsed = time.monotonic() - started
    total = Stats()
    for result in results:
        total.add(result.stats)
    failures = [r for r in results if not r.ok]
    for failure in failures:
        _out(f"FAIL seed {failure.seed}: {failure.error}")
        _out(f"  replay: {failure.command}")
    _out(
        f"sweep: {len(results)} seeds, {len(failures)} failed, {total.steps} steps in {elapsed:.1f}s "
        f"({total.steps / max(elapsed, 1e-9):.0f} steps/s)"
    )
    _out(f"totals: {total}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(_main())
