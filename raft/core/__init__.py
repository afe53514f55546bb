"""The Raft core: a pure, deterministic state machine in the shape of etcd's raft library.

No sockets, no clock, no files, no global random: a RawNode changes only when its caller feeds it,
and it answers only through Ready values. That is what lets raft.sim run a whole cluster in one
process on virtual time, and what the driver (raft.node, next issue) builds on.

Feeding the node
    node = RawNode(Config(id=1), rng=random.Random(seed), state=storage.load())
    node.tick()                      # every tick interval (the driver's clock; e.g. 10 ms)
    node.step(message)               # every Message received from a peer (addressed to this node)
    node.propose(data, client_id=..., seq=...)   # -> index on the leader, None when forwarded
    node.propose_conf_change(ConfChange(ConfChangeOp.ADD_LEARNER, 4))
    node.read_index(context)         # -> a ReadState(index, context) in a later Ready
    node.transfer_leadership(to)
    node.compact(applied_index, snapshot_bytes)  # -> Snapshot to store

Collecting its work: the Ready cycle
    while node.has_ready():
        rd = node.ready()
        storage.save(rd)                 # snapshot, entries, hard state; one fsync; marks rd persisted
        transport.send(rd.messages)      # only now: they promise what was just made durable
        if rd.snapshot: fsm.restore(rd.snapshot.data)
        for entry in rd.committed_entries: fsm.apply(entry)
        for read in rd.read_states: ...  # serve once fsm's applied index >= read.index
        node.advance(rd)

One Ready is outstanding at a time (ready() raises ReadyMisuse until advance()). The node keeps
accepting tick/step/propose while the caller persists in a thread; what they produce waits for
the next Ready. That is also the batching: proposals that queue while one Ready is written leave
together in the next, one APPEND per follower, and an idle leader sends a proposal at once.
A Ready refuses to show its messages, committed entries or read states before mark_persisted(),
and advance() refuses an unpersisted Ready: the persist-before-send contract cannot be skipped
by accident. The one exception is asked for by name: rd.take_early_messages() hands a leader
whose term and vote did not change its messages before persisting (thesis 10.2.1: the leader's
disk write overlaps its followers'; it counts its own log only once persisted).

An asyncio driver (raft.node, next issue) looks like this; ticks, received messages and
proposals call into `node` on the event loop at any time, also while a Ready is being written:

    async def ready_loop():
        while True:
            await wakeup.wait(); wakeup.clear()      # set by tick/step/propose callers
            while node.has_ready():
                rd = node.ready()
                await asyncio.to_thread(storage.persist, rd)   # fsync off the loop
                transport.send(rd.messages)
                ...apply rd.snapshot / rd.committed_entries, answer waiting clients...
                node.advance(rd)

FileStorage is not thread-safe: only that one thread (or task) may call it at a time, which also
covers save_snapshot()/compact() after node.compact().

Errors a caller handles: NotLeader (with .leader, the known leader or 0), ProposalDropped,
ConfChangeRefused, TransferRefused; InvalidMessage from step() for a message no correct peer sends
(drop the connection; nothing changed). InvariantViolated means the node must stop (bug or lost
durable data). ReadyMisuse means the caller broke the cycle above.

Membership reaches the application as committed CONF_CHANGE entries: decode_conf_entry(entry.data)
gives the whole new ConfState and the change that made it.

Exactly-once: ClientSessions is the table a state machine consults (check before apply, record
after) so a request retried under the same (client_id, seq) is applied once (thesis 6.3).

Membership: single-server changes (ADD_LEARNER, ADD_VOTER, REMOVE), effective once in the log.
Add a server as a learner first; ADD_VOTER promotes it only when it is within
Config.learner_catch_up_entries of the leader. Removing the leader is allowed: it keeps leading
until the change commits, then hands over with TimeoutNow and steps down.
"""

from raft.core.codec import CodecError, decode_conf_entry, decode_message, encode_message
from raft.core.config import Config
from raft.core.errors import (
    ConfChangeRefused,
    InvalidConfig,
    InvalidMessage,
    InvariantViolated,
    NotLeader,
    ProposalDropped,
    RaftError,
    ReadyMisuse,
    TransferRefused,
)
from raft.core.raft import Status
from raft.core.rawnode import RawNode, Ready, bootstrap_state
from raft.core.sessions import Check, ClientSessions, Verdict
from raft.core.types import (
    ConfChange,
    ConfChangeOp,
    ConfState,
    Entry,
    EntryKind,
    HardState,
    Message,
    MessageType,
    Mutation,
    PersistentState,
    ReadState,
    Role,
    Snapshot,
    SnapshotMeta,
    SoftState,
)

__all__ = [
    "Check",
    "ClientSessions",
    "CodecError",
    "ConfChange",
    "ConfChangeOp",
    "ConfChangeRefused",
    "ConfState",
    "Config",
    "Entry",
    "EntryKind",
    "HardState",
    "InvalidConfig",
    "InvalidMessage",
    "InvariantViolated",
    "Message",
    "MessageType",
    "Mutation",
    "NotLeader",
    "PersistentState",
    "ProposalDropped",
    "RaftError",
    "RawNode",
    "ReadState",
    "Ready",
    "ReadyMisuse",
    "Role",
    "Snapshot",
    "SnapshotMeta",
    "SoftState",
    "Status",
    "TransferRefused",
    "Verdict",
    "bootstrap_state",
    "decode_conf_entry",
    "decode_message",
    "encode_message",
]
