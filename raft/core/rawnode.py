"""RawNode: the Raft core as its caller sees it, with the Ready/advance cycle (etcd's rawnode.go).

The caller feeds the node (tick, step, propose, read_index, ...) and, whenever `has_ready()`,
takes one Ready, persists it, sends its messages, applies its committed entries, and calls
`advance(ready)`. Only one Ready is out at a time; the node keeps taking input meanwhile, and
what that input produces waits for the next Ready. See raft.core for the whole contract.
"""

from __future__ import annotations

import random

from raft.core.codec import encode_conf_entry
from raft.core.config import Config
from raft.core.errors import InvalidMessage, ReadyMisuse
from raft.core.raft import Raft, Status
from raft.core.types import (
    ConfChange,
    ConfChangeOp,
    ConfState,
    Entry,
    EntryKind,
    HardState,
    Message,
    MessageType,
    PersistentState,
    ReadState,
    Role,
    Snapshot,
    SoftState,
)


def _validate(m: Message) -> None:
    if m.src <= 0:
        raise InvalidMessage(f"{m.type.name} from invalid node id {m.src}")
    if m.type == MessageType.SNAPSHOT and m.snapshot is None:
        raise InvalidMessage(f"SNAPSHOT from {m.src} without snapshot metadata")
    if m.type == MessageType.APPEND and m.entries:
        previous_term = m.log_term
        for offset, entry in enumerate(m.entries):
            if entry.index != m.index + 1 + offset or not previous_term <= entry.term <= m.term:
                raise InvalidMessage(
                    f"APPEND from {m.src} at {m.index} holds entry {entry.index}/{entry.term} out of order"
                )
            previous_term = entry.term


class Ready:
    """One batch of work for the caller, to be done in this order:

    1. persist `snapshot` (if any, replacing the log), then `entries` (truncating any suffix of
       the stored log from entries[0].index), then `hard_state`; fsync when `must_sync`; then call
       `mark_persisted()` (FileStorage.save / MemoryStorage.save do both);
    2. send `messages`;
    3. restore the state machine from `snapshot` (if any), apply `committed_entries` in order, and
       serve the `read_states` whose index is applied;
    4. call `RawNode.advance(ready)`.

    `messages`, `committed_entries` and `read_states` refuse to be read before `mark_persisted()`
    when there is something to persist, so a message can never leave before the state it
    promises (a vote, an acknowledged entry) is durable.
    """

    __slots__ = (
        "_committed_entries",
        "_leader_may_send_early",
        "_messages",
        "_persisted",
        "_read_states",
        "entries",
        "hard_state",
        "must_sync",
        "snapshot",
        "soft_state",
    )

    def __init__(
        self,
        *,
        soft_state: SoftState | None,
        hard_state: HardState | None,
        entries: list[Entry],
        snapshot: Snapshot | None,
        committed_entries: list[Entry],
        messages: list[Message],
        read_states: list[ReadState],
        must_sync: bool,
    ) -> None:
        self.soft_state = soft_state
        self.hard_state = hard_state
        self.entries = entries
        self.snapshot = snapshot
        self._committed_entries = committed_entries
        self._messages = messages
        self._read_states = read_states
        self.must_sync = must_sync
        self._persisted = not self.needs_persist()
        self._leader_may_send_early = False

    def needs_persist(self) -> bool:
        return self.hard_state is not None or bool(self.entries) or self.snapshot is not None

    def mark_persisted(self) -> None:
        """Declare snapshot, entries and hard state durable (fsynced when `must_sync`)."""
        self._persisted = True

    @property
    def persisted(self) -> bool:
        return self._persisted

    def _require_persisted(self, what: str) -> None:
        if not self._persisted:
            raise ReadyMisuse(
                f"persist this Ready (snapshot, entries, hard state) and call mark_persisted() before using its {what}"
            )

    @property
    def messages(self) -> list[Message]:
        self._require_persisted("messages")
        return self._messages

    @property
    def committed_entries(self) -> list[Entry]:
        self._require_persisted("committed entries")
        return self._committed_entries

    @property
    def read_states(self) -> list[ReadState]:
        self._require_persisted("read states")
        return self._read_states

    def take_early_messages(self) -> list[Message]:
        """The messages a leader may send before this Ready is persisted (thesis 10.2.1); [] otherwise.

        A leader whose term and vote did not change in this Ready promises nothing durable in what
        it sends (appends, heartbeats, snapshot chunks, read answers): it counts its own log toward
        a commit only once advance() reports it persisted, so a commit still needs a majority of
        disks, and its disk write overlaps its followers'. The messages taken here are no longer
        in `messages`.
        """
        if not self._leader_may_send_early:
            return []
        taken, self._messages = self._messages, []
        return taken

    def is_empty(self) -> bool:
        return not (
            self.soft_state or self.needs_persist() or self._messages or self._committed_entries or self._read_states
        )


def bootstrap_state(voters: list[int] | tuple[int, ...], learners: list[int] | tuple[int, ...] = ()) -> PersistentState:
    """The identical starting state of every founding member: one committed configuration entry.

    A node that joins later starts from an empty PersistentState() and learns the configuration
    from the leader's log or snapshot.
    """
    conf = ConfState(tuple(sorted(voters)), tuple(sorted(learners)))
    if not conf.voters:
        raise ValueError("a cluster needs at least one voter")
    if set(conf.voters) & set(conf.learners):
        raise ValueError("a node cannot be both voter and learner")
    entry = Entry(
        1, 1, EntryKind.CONF_CHANGE, encode_conf_entry(conf, ConfChange(ConfChangeOp.ADD_VOTER, conf.voters[0]))
    )
    return PersistentState(hard_state=HardState(term=1, vote=0, commit=1), entries=[entry])


class RawNode:
    """A Raft node without IO. Every method is synchronous and returns quickly.

    `state` is what the node's storage holds (FileStorage.load(), or bootstrap_state() for a new
    cluster member); `rng` drives election timeouts, so a seeded one makes the node replayable.
    """

    def __init__(self, config: Config, *, rng: random.Random, state: PersistentState | None = None) -> None:
        self._raft = Raft(config, rng, state if state is not None else PersistentState())
        self._prev_soft = SoftState(self._raft.leader, self._raft.role)
        r = self._raft
        self._prev_hard = HardState(r.term, r.vote, r.log.committed)
        self._outstanding: Ready | None = None

    @property
    def id(self) -> int:
        return self._raft.id

    # --- input ---------------------------------------------------------------------------------

    def tick(self) -> None:
        """Advance logical time by one tick (election and heartbeat timeouts count ticks)."""
        self._raft.flush_needed = True
        self._raft.tick()

    def step(self, message: Message) -> None:
        """Feed a message received from another node. Messages addressed elsewhere are ignored.

        Raises InvalidMessage, without changing anything, for a message no correct peer sends.
        """
        if message.dst == self._raft.id and message.src != self._raft.id:
            _validate(message)
            self._raft.flush_needed = True
            self._raft.step(message)

    def campaign(self) -> None:
        """Start an election now instead of waiting for the election timeout."""
        self._raft.flush_needed = True
        self._raft.hup()

    def propose(self, data: bytes, *, client_id: str = "", seq: int = 0) -> int | None:
        """Append `data` to the log if leader (returns its index); a follower forwards it (returns None).

        `client_id`/`seq` identify the request so that ClientSessions applies a retry only once.
        Raises NotLeader when no leader is known, ProposalDropped when the leader refuses.
        """
        self._raft.flush_needed = True
        return self._raft.propose(data, client_id, seq)

    def propose_conf_change(self, change: ConfChange) -> int:
        """Propose a single-server membership change on the leader; returns the entry's index.

        Raises NotLeader, ProposalDropped or ConfChangeRefused (another change pending, a learner
        still behind, no voter would remain, ...). The change takes effect once it is in the log.
        """
        self._raft.flush_needed = True
        return self._raft.propose_conf_change(change)

    def read_index(self, context: bytes) -> None:
        """Ask for a linearizable read; a ReadState(index, context) arrives in a later Ready.

        Serve the read once the state machine has applied `index`. A follower forwards the request
        to its leader. Raises NotLeader when no leader is known. A request may get no answer
        (leader change, lost message): the caller times out and retries with a new context.
        """
        self._raft.flush_needed = True
        self._raft.read_index(context)

    def transfer_leadership(self, to: int) -> None:
        """On the leader: bring `to` up to date and make it start an election now (TimeoutNow)."""
        self._raft.flush_needed = True
        self._raft.transfer_leadership(to)

    def compact(self, index: int, data: bytes) -> Snapshot:
        """The application's state at applied `index` is `data`: keep it as the snapshot, drop the log up to it.

        Returns the Snapshot; the caller writes it to storage (FileStorage.save_snapshot) and may
        then compact the stored log. Followers that fall behind it get it by InstallSnapshot.
        """
        self._raft.flush_needed = True
        return self._raft.compact(index, data)

    # --- output --------------------------------------------------------------------------------

    def _hard_state(self) -> HardState:
        r = self._raft
        return HardState(r.term, r.vote, r.log.committed)

    def has_ready(self) -> bool:
        """True when a Ready has work in it. False while a Ready is outstanding (not advanced)."""
        if self._outstanding is not None:
            return False
        r = self._raft
        r.flush()
        log = r.log
        soft, hard = self._prev_soft, self._prev_hard
        return bool(
            r.msgs
            or r.read_states
            or log.handed < log.last_index()
            or r.pending_install is not None
            or log.committed > log.applying
            or r.leader != soft.leader
            or r.role != soft.role
            or r.term != hard.term
            or r.vote != hard.vote
            or log.committed != hard.commit
        )

    def ready(self) -> Ready:
        """Collect the work to do (see Ready). Raises ReadyMisuse if the previous Ready is not advanced."""
        if self._outstanding is not None:
            raise ReadyMisuse("advance() the previous Ready before asking for the next")
        r = self._raft
        r.flush()
        log = r.log
        soft = SoftState(r.leader, r.role)
        hard = self._hard_state()
        hard_changed = hard != self._prev_hard
        entries = log.unstable_entries()
        snapshot = r.pending_install
        committed = log.next_committed(r.cfg.max_apply_bytes)
        rd = Ready(
            soft_state=soft if soft != self._prev_soft else None,
            hard_state=hard if hard_changed else None,
            entries=entries,
            snapshot=snapshot,
            committed_entries=committed,
            messages=r.msgs,
            read_states=r.read_states,
            must_sync=bool(entries)
            or snapshot is not None
            or (hard_changed and (hard.term != self._prev_hard.term or hard.vote != self._prev_hard.vote)),
        )
        # A leader in an unchanged term and vote may let this Ready's messages leave before it is
        # persisted (see Ready.take_early_messages).
        rd._leader_may_send_early = r.role == Role.LEADER and (
            not hard_changed or (hard.term, hard.vote) == (self._prev_hard.term, self._prev_hard.vote)
        )
        # Everything in the Ready now counts as handed out.
        self._prev_soft = soft
        self._prev_hard = hard
        log.handed = log.last_index()
        r.pending_install = None
        if committed:
            log.applying = committed[-1].index
        r.msgs = []
        r.read_states = []
        self._outstanding = rd
        return rd

    def advance(self, rd: Ready) -> None:
        """The caller has persisted, sent and applied `rd` (in that order)."""
        if rd is not self._outstanding:
            raise ReadyMisuse("advance() must be given the Ready returned by the last ready()")
        if not rd.persisted:
            raise ReadyMisuse("advance() called on a Ready that was not persisted (call mark_persisted())")
        self._outstanding = None
        log = self._raft.log
        if rd.snapshot is not None:
            meta = rd.snapshot.meta
            if log.snapshot.index == meta.index and log.snapshot.term == meta.term:
                log.persisted = max(log.persisted, meta.index)
                log.handed = max(log.handed, meta.index)
            log.applied = max(log.applied, meta.index)
        if rd.entries:
            last = rd.entries[-1]
            log.stable_to(last.index, last.term)
        applied = rd.committed_entries
        if applied:
            log.applied = max(log.applied, applied[-1].index)
        self._raft.flush_needed = True
        self._raft.on_persisted()

    # --- inspection ----------------------------------------------------------------------------

    def status(self) -> Status:
        return self._raft.status()

    @property
    def raft(self) -> Raft:
        """The state machine itself, for tests and the simulator's checks. Do not mutate."""
        return self._raft
