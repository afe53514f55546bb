"""The values the Raft core exchanges with its caller: entries, messages, hard state, snapshots.

Entries, hard state, snapshots and configurations are immutable tuples, so the core can hand them
out without copying. A Message is a small mutable record; the core never touches one after it
has handed it out in a Ready, and never keeps one it was given.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import NamedTuple


class Role(enum.IntEnum):
    """What a node currently is (thesis 3.3; pre-candidate is the pre-vote phase of 9.6)."""

    FOLLOWER = 0
    PRE_CANDIDATE = 1
    CANDIDATE = 2
    LEADER = 3


class EntryKind(enum.IntEnum):
    """NORMAL carries application data; CONF_CHANGE a whole new configuration; NOOP a new leader's first entry."""

    NORMAL = 0
    CONF_CHANGE = 1
    NOOP = 2


class Entry(NamedTuple):
    """One log entry. `client_id` and `seq` identify a client request so a retry is applied once."""

    term: int
    index: int  # type: ignore[assignment]  # shadows tuple.index, as etcd's Entry.Index reads
    kind: EntryKind = EntryKind.NORMAL
    data: bytes = b""
    client_id: str = ""
    seq: int = 0


# What an entry costs in a message or a log segment beyond its payload (term, index, kind, ids).
ENTRY_OVERHEAD_BYTES = 24


def entry_size(entry: Entry) -> int:
    """Approximate encoded size of an entry, used for message and in-flight byte limits."""
    return len(entry.data) + len(entry.client_id) + ENTRY_OVERHEAD_BYTES


class HardState(NamedTuple):
    """What must be durable before any message of the same Ready is sent (thesis 3.8)."""

    term: int = 0
    vote: int = 0
    commit: int = 0


class ConfState(NamedTuple):
    """A whole configuration: the voters (whose majorities decide) and the learners (who only replicate)."""

    voters: tuple[int, ...] = ()
    learners: tuple[int, ...] = ()

    def members(self) -> tuple[int, ...]:
        return tuple(sorted((*self.voters, *self.learners)))


class ConfChangeOp(enum.IntEnum):
    """Single-server membership changes (thesis 4.1); ADD_VOTER on a learner promotes it."""

    ADD_LEARNER = 0
    ADD_VOTER = 1
    REMOVE = 2


class ConfChange(NamedTuple):
    """A requested membership change of one server."""

    op: ConfChangeOp
    node_id: int


class SnapshotMeta(NamedTuple):
    """Where a snapshot sits in the log and the configuration in effect at that index."""

    index: int = 0  # type: ignore[assignment]  # shadows tuple.index
    term: int = 0
    conf: ConfState = ConfState()


class Snapshot(NamedTuple):
    """The application's state at `meta.index`, as opaque bytes."""

    meta: SnapshotMeta
    data: bytes = b""


class ReadState(NamedTuple):
    """A linearizable read may be served once the node has applied `index` (thesis 6.4)."""

    index: int  # type: ignore[assignment]  # shadows tuple.index
    context: bytes


class SoftState(NamedTuple):
    """Volatile state worth reporting when it changes: who leads, and what this node is."""

    leader: int
    role: Role


class MessageType(enum.IntEnum):
    """Messages between nodes. PROPOSE, READ_INDEX and TRANSFER_LEADER are forwarded by followers."""

    APPEND = 1
    APPEND_RESP = 2
    VOTE = 3
    VOTE_RESP = 4
    PRE_VOTE = 5
    PRE_VOTE_RESP = 6
    HEARTBEAT = 7
    HEARTBEAT_RESP = 8
    SNAPSHOT = 9
    SNAPSHOT_RESP = 10
    TIMEOUT_NOW = 11
    PROPOSE = 12
    READ_INDEX = 13
    READ_INDEX_RESP = 14
    TRANSFER_LEADER = 15


@dataclass(slots=True)
class Message:
    """A message from `src` to `dst`. Fields a type does not use keep their defaults.

    APPEND: `index`/`log_term` name the entry before `entries`; `commit` is the leader's commit.
    APPEND_RESP: `index` is the last index now matching, or on `reject` the rejected index with
    `reject_hint`/`log_term` pointing where to probe next. SNAPSHOT carries one chunk of the
    snapshot `snapshot` at byte `offset` (`done` on the last); SNAPSHOT_RESP acknowledges up to
    `offset`. HEARTBEAT and HEARTBEAT_RESP carry `read_seq`, the ReadIndex round being confirmed.
    VOTE with `force` comes from a leadership transfer and is granted even within a leader lease.
    """

    type: MessageType
    src: int
    dst: int
    term: int = 0
    log_term: int = 0
    index: int = 0
    entries: tuple[Entry, ...] = ()
    commit: int = 0
    reject: bool = False
    reject_hint: int = 0
    snapshot: SnapshotMeta | None = None
    offset: int = 0
    data: bytes = b""
    done: bool = False
    context: bytes = b""
    read_seq: int = 0
    force: bool = False


@dataclass(slots=True)
class PersistentState:
    """What a node reads back from its storage when it starts: hard state, latest snapshot, log after it."""

    hard_state: HardState = field(default_factory=HardState)
    snapshot: Snapshot | None = None
    entries: list[Entry] = field(default_factory=list)


class Mutation(enum.Enum):
    """Deliberate bugs, for tests only: they prove the simulator's checker can fail.

    Never set outside tests. Each one breaks a rule the Raft paper states.
    """

    NONE = "none"
    COMMIT_ANY_TERM = "commit_any_term"  # commit by counting replicas of entries from older terms (Figure 8)
    DOUBLE_VOTE = "double_vote"  # grant a vote although one was already cast in this term
    STALE_READ = "stale_read"  # answer ReadIndex from the local commit index without a quorum round
    NO_DEDUP = "no_dedup"  # client sessions forget request ids (exactly-once is lost)
