"""The Raft state machine of one node: elections, replication, membership, transfer, reads.

Pure and deterministic: it changes only when told (tick, step, propose, ...) and only talks by
appending to `msgs` and `read_states`, which RawNode hands out in a Ready. Randomness comes from
the `rng` passed in. The structure follows etcd's raft.go; the numbers in comments refer to
sections of Ongaro's thesis "Consensus: Bridging Theory and Practice" (2014).

Membership uses single-server changes (thesis 4.1): a configuration entry holds the whole new
configuration and takes effect as soon as it is in the log, committed or not; truncating it
reverts to the previous one. A leader proposes a change only once its previous one is
committed and it has committed an entry of its own term (the fix to the bug Ongaro reported
on raft-dev in 2015).
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass
from typing import NamedTuple

from raft.core.codec import decode_conf_entry, encode_conf_entry
from raft.core.config import Config
from raft.core.errors import (
    ConfChangeRefused,
    InvariantViolated,
    NotLeader,
    ProposalDropped,
    RaftError,
    TransferRefused,
)
from raft.core.log import RaftLog
from raft.core.progress import Inflights, Progress, ProgressState
from raft.core.types import (
    ConfChange,
    ConfChangeOp,
    ConfState,
    Entry,
    EntryKind,
    Message,
    MessageType,
    Mutation,
    PersistentState,
    ReadState,
    Role,
    Snapshot,
    SnapshotMeta,
    entry_size,
)

T = MessageType

_FROM_LEADER = frozenset({T.APPEND, T.HEARTBEAT, T.SNAPSHOT})
_VOTES = frozenset({T.VOTE, T.PRE_VOTE})


class _PendingRead(NamedTuple):
    seq: int  # the heartbeat round that must be confirmed by a quorum
    index: int  # type: ignore[assignment]  # the commit index when the read arrived (shadows tuple.index)
    context: bytes
    requester: int


@dataclass(frozen=True, slots=True)
class Status:
    """A snapshot of a node's state for operators and tests (the leader fills `progress`)."""

    id: int
    role: Role
    term: int
    vote: int
    leader: int
    commit: int
    applied: int
    first_index: int
    last_index: int
    persisted: int
    conf: ConfState
    lead_transferee: int
    progress: dict[int, str]


class Raft:
    """One node's protocol state. Driven through RawNode; see raft.core for the contract."""

    def __init__(self, config: Config, rng: random.Random, state: PersistentState) -> None:
        config.validate()
        self.cfg = config
        self.id = config.id
        self.rng = rng
        self.mutation = config.mutation
        self.snapshot: Snapshot | None = state.snapshot
        meta = state.snapshot.meta if state.snapshot is not None else SnapshotMeta()
        hard = state.hard_state
        self.log = RaftLog(meta, list(state.entries), hard.commit)
        self.term = hard.term
        self.vote = hard.vote
        self.msgs: list[Message] = []
        self.read_states: list[ReadState] = []
        self.pending_install: Snapshot | None = None  # received from the leader, for the next Ready
        self.role = Role.FOLLOWER
        self.leader = 0
        self.progress: dict[int, Progress] = {}
        self.votes: dict[int, bool] = {}
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.randomized_timeout = config.election_ticks
        self.lead_transferee = 0
        self.pending_reads: deque[_PendingRead] = deque()
        self.deferred_reads: list[tuple[bytes, int]] = []
        self.read_seq = 0
        self.read_round_needed = False
        self.uncommitted_bytes = 0
        self.incoming: tuple[SnapshotMeta, bytearray] | None = None
        self.flush_needed = True  # set by every input (RawNode), cleared by flush()
        self._confs: list[tuple[int, ConfState]] = [
            (e.index, decode_conf_entry(e.data)[0]) for e in self.log.entries if e.kind == EntryKind.CONF_CHANGE
        ]
        self.conf = ConfState()
        self.voters: frozenset[int] = frozenset()
        self.learners: frozenset[int] = frozenset()
        self.quorum = 1
        self._set_conf()
        self.become_follower(self.term, 0)

    # --- configuration -------------------------------------------------------------------------

    def _set_conf(self) -> None:
        conf = self._confs[-1][1] if self._confs else self.log.snapshot.conf
        self.conf = conf
        self.voters = frozenset(conf.voters)
        self.learners = frozenset(conf.learners)
        self.quorum = len(self.voters) // 2 + 1
        if self.role == Role.LEADER:
            self._sync_progress()

    def _latest_conf_index(self) -> int:
        return self._confs[-1][0] if self._confs else self.log.snapshot.index

    def conf_at(self, index: int) -> ConfState:
        """The configuration in effect at log index `index` (>= the snapshot index)."""
        conf = self.log.snapshot.conf
        for conf_index, candidate in self._confs:
            if conf_index > index:
                break
            conf = candidate
        return conf

    def promotable(self) -> bool:
        return self.id in self.voters

    def _new_progress(self, is_learner: bool) -> Progress:
        pr = Progress(self.log.last_index() + 1, Inflights(self.cfg.max_inflight_msgs, self.cfg.max_inflight_bytes))
        pr.is_learner = is_learner
        pr.recent_active = True  # a new member gets an election timeout before check-quorum counts it out
        return pr

    def _sync_progress(self) -> None:
        """Make the leader's progress map match the configuration: add new members, drop removed ones."""
        members = self.voters | self.learners
        for node in list(self.progress):
            if node not in members:
                del self.progress[node]
        for node in sorted(members):
            pr = self.progress.get(node)
            if pr is None:
                pr = self.progress[node] = self._new_progress(node in self.learners)
                if node == self.id:
                    pr.match = self.log.persisted
                    pr.become_replicate()
            pr.is_learner = node in self.learners
        if self.lead_transferee and self.lead_transferee not in self.voters:
            self.lead_transferee = 0

    def _append(self, entries: list[Entry] | tuple[Entry, ...]) -> None:
        """Append to the log, keeping the configuration in step with it (thesis 4.1)."""
        changed = False
        first = entries[0].index
        if first <= self.log.last_index() and self._confs and self._confs[-1][0] >= first:
            self._confs = [(i, c) for i, c in self._confs if i < first]
            changed = True
        self.log.append(entries)
        for entry in entries:
            if entry.kind == EntryKind.CONF_CHANGE:
                self._confs.append((entry.index, decode_conf_entry(entry.data)[0]))
                changed = True
        if changed:
            self._set_conf()

    # --- sending -------------------------------------------------------------------------------

    def _send(self, m: Message) -> None:
        self.msgs.append(m)

    # --- role changes --------------------------------------------------------------------------

    def _reset(self, term: int) -> None:
        if term != self.term:
            self.term = term
            self.vote = 0
        self.leader = 0
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.randomized_timeout = self.cfg.election_ticks + self.rng.randrange(self.cfg.election_ticks)
        self.lead_transferee = 0
        self.votes = {}
        self.progress = {}
        self.pending_reads.clear()
        self.deferred_reads = []
        self.read_seq = 0
        self.read_round_needed = False
        self.uncommitted_bytes = 0

    def become_follower(self, term: int, leader: int) -> None:
        self._reset(term)
        self.leader = leader
        self.role = Role.FOLLOWER

    def _become_pre_candidate(self) -> None:
        # Pre-vote changes neither the term nor the vote (thesis 9.6).
        self.votes = {}
        self.leader = 0
        self.role = Role.PRE_CANDIDATE
        self.randomized_timeout = self.cfg.election_ticks + self.rng.randrange(self.cfg.election_ticks)

    def _become_candidate(self) -> None:
        if self.role == Role.LEADER:
            raise InvariantViolated("a leader cannot become a candidate")
        self._reset(self.term + 1)
        self.vote = self.id
        self.role = Role.CANDIDATE

    def _become_leader(self) -> None:
        if self.role == Role.FOLLOWER:
            raise InvariantViolated("a follower cannot become leader without an election")
        self._reset(self.term)
        self.leader = self.id
        self.role = Role.LEADER
        self._sync_progress()
        # The no-op entry lets the new leader commit, and so learn the commit index, in its own term (8).
        self._append([Entry(self.term, self.log.last_index() + 1, EntryKind.NOOP)])

    # --- elections -----------------------------------------------------------------------------

    def hup(self, *, transfer: bool = False) -> None:
        """Start an election now (with pre-vote unless this is a leadership transfer)."""
        if self.role == Role.LEADER or not self.promotable():
            return
        if self.cfg.pre_vote and not transfer:
            self._campaign(pre_vote=True, transfer=False)
        else:
            self._campaign(pre_vote=False, transfer=transfer)

    def _campaign(self, *, pre_vote: bool, transfer: bool) -> None:
        if pre_vote:
            self._become_pre_candidate()
            term = self.term + 1
            kind = T.PRE_VOTE
        else:
            self._become_candidate()
            term = self.term
            kind = T.VOTE
        self.votes[self.id] = True
        if self._tally() == 1:
            self._won(pre_vote)
            return
        last_index, last_term = self.log.last_index(), self.log.last_term()
        for node in sorted(self.voters):
            if node != self.id:
                self._send(
                    Message(kind, self.id, node, term=term, index=last_index, log_term=last_term, force=transfer)
                )

    def _tally(self) -> int:
        """1 if the election is won, -1 if lost, 0 while undecided."""
        granted = rejected = 0
        for node, granted_vote in self.votes.items():
            if node in self.voters:
                if granted_vote:
                    granted += 1
                else:
                    rejected += 1
        if granted >= self.quorum:
            return 1
        if rejected > len(self.voters) - self.quorum:
            return -1
        return 0

    def _won(self, pre_vote: bool) -> None:
        if pre_vote:
            self._campaign(pre_vote=False, transfer=False)
        else:
            self._become_leader()

    def _handle_vote(self, m: Message) -> None:
        can_vote = (
            self.vote == m.src or (self.vote == 0 and self.leader == 0) or (m.type == T.PRE_VOTE and m.term > self.term)
        )
        if self.mutation == Mutation.DOUBLE_VOTE and m.type == T.VOTE and self.leader == 0:
            can_vote = True
        response = T.VOTE_RESP if m.type == T.VOTE else T.PRE_VOTE_RESP
        if can_vote and self.log.is_up_to_date(m.index, m.log_term):
            # Answer with the request's term: a pre-vote is for a term this node has not reached.
            self._send(Message(response, self.id, m.src, term=m.term))
            if m.type == T.VOTE:
                self.election_elapsed = 0
                self.vote = m.src
        else:
            self._send(Message(response, self.id, m.src, term=self.term, reject=True))

    # --- ticks ---------------------------------------------------------------------------------

    def tick(self) -> None:
        if self.role == Role.LEADER:
            self._tick_leader()
            return
        self.election_elapsed += 1
        if self.election_elapsed >= self.randomized_timeout and self.promotable():
            self.election_elapsed = 0
            self.hup()

    def _tick_leader(self) -> None:
        self.heartbeat_elapsed += 1
        self.election_elapsed += 1
        if self.election_elapsed >= self.cfg.election_ticks:
            self.election_elapsed = 0
            if self.cfg.check_quorum:
                if not self._quorum_active():
                    self.become_follower(self.term, 0)  # check-quorum (thesis 6.2)
                    return
                for node, pr in self.progress.items():
                    if node != self.id:
                        pr.recent_active = False
            self.lead_transferee = 0  # a transfer that did not finish within an election timeout is abandoned
        if self.heartbeat_elapsed >= self.cfg.heartbeat_ticks:
            self.heartbeat_elapsed = 0
            self._broadcast_heartbeat()

    def _quorum_active(self) -> bool:
        active = 0
        for node in self.voters:
            if node == self.id:
                active += 1
            else:
                pr = self.progress.get(node)
                if pr is not None and pr.recent_active:
                    active += 1
        return active >= self.quorum

    # --- the step function ---------------------------------------------------------------------

    def step(self, m: Message) -> None:
        if m.term != 0 and not self._check_term(m):
            return
        if m.type in _VOTES:
            self._handle_vote(m)
        elif self.role == Role.LEADER:
            self._step_leader(m)
        elif self.role == Role.FOLLOWER:
            self._step_follower(m)
        else:
            self._step_candidate(m)

    def _check_term(self, m: Message) -> bool:
        """Apply the term rules (thesis 3.3, 9.6, 4.2.3); False if the message is to be dropped.

        Forwarded proposals and reads carry term 0 and skip this.
        """
        if m.term > self.term:
            if m.type in _VOTES:
                in_lease = (
                    self.cfg.check_quorum and self.leader != 0 and self.election_elapsed < self.cfg.election_ticks
                )
                if in_lease and not m.force:
                    return False  # a voter that hears from a leader ignores vote requests
            if m.type != T.PRE_VOTE and not (m.type == T.PRE_VOTE_RESP and not m.reject):
                self.become_follower(m.term, m.src if m.type in _FROM_LEADER else 0)  # pre-vote never moves the term
            return True
        if m.term < self.term:
            if (self.cfg.check_quorum or self.cfg.pre_vote) and m.type in (T.HEARTBEAT, T.APPEND):
                # A stale leader learns of the newer term and steps down; without this a node whose term
                # ran ahead (and whose votes are ignored under pre-vote or a lease) could be stuck forever.
                self._send(Message(T.APPEND_RESP, self.id, m.src, term=self.term))
            elif m.type == T.PRE_VOTE:
                self._send(Message(T.PRE_VOTE_RESP, self.id, m.src, term=self.term, reject=True))
            return False
        return True

    def _step_follower(self, m: Message) -> None:
        t = m.type
        if t == T.APPEND:
            self.election_elapsed = 0
            self.leader = m.src
            self._handle_append(m)
        elif t == T.HEARTBEAT:
            self.election_elapsed = 0
            self.leader = m.src
            self._handle_heartbeat(m)
        elif t == T.SNAPSHOT:
            self.election_elapsed = 0
            self.leader = m.src
            self._handle_snapshot_chunk(m)
        elif t == T.TIMEOUT_NOW:
            self.hup(transfer=True)  # leadership transfer (thesis 3.10): skip pre-vote and the lease
        elif t == T.READ_INDEX_RESP:
            self.read_states.append(ReadState(m.index, m.context))
        # Forwarded PROPOSE / READ_INDEX reaching a follower are dropped: forwarding them on could loop.

    def _step_candidate(self, m: Message) -> None:
        t = m.type
        if t in _FROM_LEADER:
            self.become_follower(m.term, m.src)
            self._step_follower(m)
        elif (t == T.VOTE_RESP and self.role == Role.CANDIDATE) or (
            t == T.PRE_VOTE_RESP and self.role == Role.PRE_CANDIDATE
        ):
            self.votes.setdefault(m.src, not m.reject)
            outcome = self._tally()
            if outcome == 1:
                self._won(self.role == Role.PRE_CANDIDATE)
            elif outcome == -1:
                self.become_follower(self.term, 0)

    def _step_leader(self, m: Message) -> None:
        t = m.type
        if t == T.PROPOSE:
            if self.lead_transferee == 0 and self.id in self.progress:
                for entry in m.entries:
                    if entry.kind == EntryKind.NORMAL and self._uncommitted_room(entry):
                        self._leader_append(EntryKind.NORMAL, entry.data, entry.client_id, entry.seq)
            return
        if t == T.READ_INDEX:
            self._leader_read(m.context, m.src)
            return
        pr = self.progress.get(m.src)
        if pr is None:
            return
        if t == T.APPEND_RESP:
            self._handle_append_response(m, pr)
        elif t == T.HEARTBEAT_RESP:
            self._handle_heartbeat_response(m, pr)
        elif t == T.SNAPSHOT_RESP:
            self._handle_snapshot_response(m, pr)

    def _handle_heartbeat_response(self, m: Message, pr: Progress) -> None:
        pr.recent_active = True
        pr.paused = False
        if pr.state == ProgressState.SNAPSHOT:
            self._resend_snapshot(m.src, pr)
        elif pr.match < self.log.last_index() or pr.state == ProgressState.PROBE:
            # An empty APPEND gets a follower out of a full window whose messages were all lost.
            self._send_append(m.src, pr, allow_empty=True, ignore_full=True)
        if m.read_seq > pr.read_ack:
            pr.read_ack = m.read_seq
            self._release_reads()

    def _handle_snapshot_response(self, m: Message, pr: Progress) -> None:
        pr.recent_active = True
        if pr.state != ProgressState.SNAPSHOT or m.snapshot is None or m.snapshot.index != pr.pending_snapshot:
            return
        if m.reject:
            pr.snap_sent = pr.snap_acked = m.offset
            pr.snap_done_sent = False
        else:
            pr.snap_acked = max(pr.snap_acked, m.offset)
        self._send_snapshot_chunks(m.src, pr)

    # --- replication: follower side ------------------------------------------------------------

    def _handle_append(self, m: Message) -> None:
        log = self.log
        if m.index < log.committed:
            self._send(Message(T.APPEND_RESP, self.id, m.src, term=self.term, index=log.committed))
            return
        if log.term(m.index) == m.log_term:
            last_new = m.index + len(m.entries)
            conflict = log.find_conflict(m.entries)
            if conflict:
                self._append(m.entries[conflict - m.index - 1 :])
            log.commit_to(min(m.commit, last_new))
            self._send(Message(T.APPEND_RESP, self.id, m.src, term=self.term, index=last_new))
            return
        # Fast backtracking: point the leader at the last index whose term could still match.
        hint_index, hint_term = log.find_conflict_by_term(m.index, m.log_term)
        self._send(
            Message(
                T.APPEND_RESP,
                self.id,
                m.src,
                term=self.term,
                index=m.index,
                reject=True,
                reject_hint=hint_index,
                log_term=hint_term,
            )
        )

    def _handle_heartbeat(self, m: Message) -> None:
        self.log.commit_to(m.commit)
        self._send(Message(T.HEARTBEAT_RESP, self.id, m.src, term=self.term, read_seq=m.read_seq))

    def _handle_snapshot_chunk(self, m: Message) -> None:
        meta = m.snapshot
        if meta is None:
            return
        if meta.index <= self.log.committed:
            self.incoming = None
            self._send(Message(T.APPEND_RESP, self.id, m.src, term=self.term, index=self.log.committed))
            return
        incoming = self.incoming
        if m.offset == 0:
            incoming = self.incoming = (meta, bytearray())
        if incoming is None or incoming[0] != meta or m.offset != len(incoming[1]):
            have = len(incoming[1]) if incoming is not None and incoming[0] == meta else 0
            self._send(
                Message(T.SNAPSHOT_RESP, self.id, m.src, term=self.term, snapshot=meta, offset=have, reject=True)
            )
            return
        incoming[1].extend(m.data)
        if not m.done:
            self._send(Message(T.SNAPSHOT_RESP, self.id, m.src, term=self.term, snapshot=meta, offset=len(incoming[1])))
            return
        self.incoming = None
        if self._restore(Snapshot(meta, bytes(incoming[1]))):
            self._send(Message(T.APPEND_RESP, self.id, m.src, term=self.term, index=self.log.last_index()))
        else:
            self._send(Message(T.APPEND_RESP, self.id, m.src, term=self.term, index=self.log.committed))

    def _restore(self, snapshot: Snapshot) -> bool:
        """Install a snapshot from the leader; False if our log already covers it."""
        meta = snapshot.meta
        if meta.index <= self.log.committed:
            return False
        if self.log.term(meta.index) == meta.term:
            # Our log has the snapshot's last entry, hence everything before it: just commit (thesis 5.1).
            self.log.commit_to(meta.index)
            return False
        self.log.restore(meta)
        self.snapshot = snapshot
        self.pending_install = snapshot
        self._confs = []
        self._set_conf()
        return True

    # --- replication: leader side --------------------------------------------------------------

    def _uncommitted_room(self, entry: Entry) -> bool:
        limit = self.cfg.max_uncommitted_bytes
        return limit == 0 or self.uncommitted_bytes == 0 or self.uncommitted_bytes + entry_size(entry) <= limit

    def _leader_append(self, kind: EntryKind, data: bytes, client_id: str = "", seq: int = 0) -> int:
        index = self.log.last_index() + 1
        entry = Entry(self.term, index, kind, data, client_id, seq)
        self._append([entry])
        if self.cfg.max_uncommitted_bytes:
            self.uncommitted_bytes += entry_size(entry)
        return index

    def _handle_append_response(self, m: Message, pr: Progress) -> None:
        pr.recent_active = True
        if m.reject:
            next_probe = m.reject_hint
            if m.log_term > 0:
                next_probe, _ = self.log.find_conflict_by_term(m.reject_hint, m.log_term)
            if pr.maybe_decrease_to(m.index, next_probe):
                if pr.state == ProgressState.REPLICATE:
                    pr.become_probe()
                self._send_append(m.src, pr, allow_empty=True)
            return
        if pr.maybe_update(m.index) or (pr.match == m.index and pr.state == ProgressState.PROBE):
            if pr.state == ProgressState.PROBE:
                pr.become_replicate()
            elif pr.state == ProgressState.SNAPSHOT and pr.match + 1 >= self.log.first_index():
                pr.become_probe()
                pr.become_replicate()
            elif pr.state == ProgressState.REPLICATE:
                pr.inflights.free_le(m.index)
            self._maybe_commit()
            if self.role == Role.LEADER and m.src == self.lead_transferee and pr.match == self.log.last_index():
                self._send(Message(T.TIMEOUT_NOW, self.id, m.src, term=self.term))

    def _send_append(self, to: int, pr: Progress, *, allow_empty: bool, ignore_full: bool = False) -> bool:
        """Send one APPEND to `to` if flow control allows; a SNAPSHOT instead if the log is compacted."""
        if pr.state == ProgressState.SNAPSHOT or (pr.state == ProgressState.PROBE and pr.paused):
            return False
        full = pr.state == ProgressState.REPLICATE and pr.inflights.full()
        if full and not ignore_full:
            return False
        prev = pr.next - 1
        prev_term = self.log.term(prev)
        if prev_term is None:
            return self._start_snapshot(to, pr)
        log = self.log
        entries = log.slice(pr.next, self.cfg.max_msg_bytes) if pr.next <= log.last_index() and not full else []
        if not entries and not allow_empty:
            return False
        commit = log.committed
        self._send(
            Message(
                T.APPEND,
                self.id,
                to,
                term=self.term,
                index=prev,
                log_term=prev_term,
                entries=tuple(entries),
                commit=commit,
            )
        )
        if pr.state == ProgressState.REPLICATE:
            if entries:
                pr.next = entries[-1].index + 1
                pr.inflights.add(pr.next - 1, sum(entry_size(e) for e in entries))
        else:
            pr.paused = True
        pr.sent_commit = max(pr.sent_commit, min(commit, prev + len(entries)))
        return True

    def flush(self) -> None:
        """Send what is waiting: entries to followers as far as flow control allows, read rounds.

        Called when the caller collects a Ready, so proposals that arrive while a Ready is being
        persisted leave together in one APPEND per follower: batching grows with load, and an
        idle leader sends a lone proposal at once. There is no tick-based batching.
        """
        if not self.flush_needed:
            return
        self.flush_needed = False
        if self.role != Role.LEADER:
            return
        if self.read_round_needed:
            self.read_round_needed = False
            self._broadcast_heartbeat()
        last = self.log.last_index()
        committed = self.log.committed
        for node, pr in self.progress.items():
            if node == self.id:
                continue
            if pr.state == ProgressState.SNAPSHOT:
                continue
            bump = pr.sent_commit < min(committed, pr.next - 1)
            if pr.next > last and not bump:
                continue
            sent = self._send_append(node, pr, allow_empty=bump)
            while sent and pr.state == ProgressState.REPLICATE and pr.next <= last:
                sent = self._send_append(node, pr, allow_empty=False)

    def _broadcast_heartbeat(self) -> None:
        committed = self.log.committed
        for node, pr in self.progress.items():
            if node != self.id:
                commit = min(pr.match, committed)
                self._send(Message(T.HEARTBEAT, self.id, node, term=self.term, commit=commit, read_seq=self.read_seq))
                pr.sent_commit = max(pr.sent_commit, commit)

    def _maybe_commit(self) -> bool:
        """Advance the commit index to what a quorum of voters stores, counting only this term (Figure 8)."""
        progress = self.progress
        matches = sorted((progress[v].match for v in self.voters if v in progress), reverse=True)
        if len(matches) < self.quorum:
            return False
        index = matches[self.quorum - 1]
        log = self.log
        if index <= log.committed:
            return False
        if log.term(index) != self.term and self.mutation != Mutation.COMMIT_ANY_TERM:
            return False
        previous = log.committed
        log.commit_to(index)
        self._after_commit(previous)
        return True

    def _after_commit(self, previous: int) -> None:
        if self.cfg.max_uncommitted_bytes:
            for i in range(previous + 1, self.log.committed + 1):
                self.uncommitted_bytes -= entry_size(self.log.entry(i))
            self.uncommitted_bytes = max(0, self.uncommitted_bytes)
        if self.deferred_reads and self.log.term(self.log.committed) == self.term:
            deferred, self.deferred_reads = self.deferred_reads, []
            for context, requester in deferred:
                self._leader_read(context, requester)
        if self.id not in self.voters and self._latest_conf_index() <= self.log.committed:
            self._step_down_removed()

    def _step_down_removed(self) -> None:
        """The configuration that removes this leader is committed: hand over and step down (thesis 4.2.2)."""
        last = self.log.last_index()
        successor = 0
        for node in sorted(self.voters):
            pr = self.progress.get(node)
            if pr is not None and pr.match == last:
                successor = node
                break
        if successor:
            self._send(Message(T.TIMEOUT_NOW, self.id, successor, term=self.term))
        self.become_follower(self.term, 0)

    def on_persisted(self) -> None:
        """The caller made the log durable up to log.persisted: the leader counts its own copy now."""
        if self.role != Role.LEADER:
            return
        pr = self.progress.get(self.id)
        if pr is not None and pr.maybe_update(self.log.persisted):
            self._maybe_commit()

    # --- snapshots -----------------------------------------------------------------------------

    def _start_snapshot(self, to: int, pr: Progress) -> bool:
        if not pr.recent_active:
            return False  # do not push a snapshot at a node that may be down
        if self.snapshot is None:
            raise InvariantViolated(f"log is compacted to {self.log.snapshot.index} but no snapshot is held")
        pr.become_snapshot(self.snapshot.meta.index)
        self._send_snapshot_chunks(to, pr)
        return True

    def _send_snapshot_chunks(self, to: int, pr: Progress) -> None:
        snapshot = self.snapshot
        if snapshot is None:
            return
        if snapshot.meta.index != pr.pending_snapshot:
            pr.become_snapshot(snapshot.meta.index)  # compacted again meanwhile: send the newer one
        data = snapshot.data
        chunk = self.cfg.snapshot_chunk_bytes
        window = chunk * self.cfg.snapshot_inflight_chunks
        while not pr.snap_done_sent and pr.snap_sent - pr.snap_acked < window:
            part = data[pr.snap_sent : pr.snap_sent + chunk]
            done = pr.snap_sent + len(part) >= len(data)
            self._send(
                Message(
                    T.SNAPSHOT,
                    self.id,
                    to,
                    term=self.term,
                    snapshot=snapshot.meta,
                    offset=pr.snap_sent,
                    data=part,
                    done=done,
                )
            )
            pr.snap_sent += len(part)
            pr.snap_done_sent = done

    def _resend_snapshot(self, to: int, pr: Progress) -> None:
        """Resend from the last acknowledged byte: chunks may have been lost."""
        pr.snap_sent = pr.snap_acked
        pr.snap_done_sent = False
        self._send_snapshot_chunks(to, pr)

    def compact(self, index: int, data: bytes) -> Snapshot:
        """Record the application's snapshot at applied `index` and drop the log up to it."""
        log = self.log
        if index <= log.snapshot.index:
            raise RaftError(f"index {index} is already compacted (snapshot at {log.snapshot.index})")
        if index > log.applied:
            raise RaftError(f"cannot snapshot at {index}: only {log.applied} is applied")
        term = log.term(index)
        if term is None:
            raise InvariantViolated(f"no term for applied index {index}")
        meta = SnapshotMeta(index, term, self.conf_at(index))
        log.compact(meta)
        self._confs = [(i, c) for i, c in self._confs if i > index]
        self.snapshot = Snapshot(meta, data)
        return self.snapshot

    # --- client requests -----------------------------------------------------------------------

    def propose(self, data: bytes, client_id: str, seq: int) -> int | None:
        if self.role != Role.LEADER:
            if self.leader and self.cfg.forward_proposals:
                entry = Entry(0, 0, EntryKind.NORMAL, data, client_id, seq)
                self._send(Message(T.PROPOSE, self.id, self.leader, entries=(entry,)))
                return None
            raise NotLeader(self.leader)
        self._check_can_propose()
        if not self._uncommitted_room(Entry(0, 0, EntryKind.NORMAL, data, client_id, seq)):
            raise ProposalDropped("too much uncommitted data; retry later")
        return self._leader_append(EntryKind.NORMAL, data, client_id, seq)

    def _check_can_propose(self) -> None:
        if self.lead_transferee:
            raise ProposalDropped(f"leadership is being transferred to {self.lead_transferee}")
        if self.id not in self.progress:
            raise ProposalDropped("this leader is being removed from the cluster")

    def propose_conf_change(self, change: ConfChange) -> int:
        if self.role != Role.LEADER:
            raise NotLeader(self.leader)
        self._check_can_propose()
        if self.log.term(self.log.committed) != self.term:
            raise ConfChangeRefused("the leader has not yet committed an entry in its term")
        if self._latest_conf_index() > self.log.committed:
            raise ConfChangeRefused(f"the change at index {self._latest_conf_index()} is not committed yet")
        conf = self._changed_conf(change)
        return self._leader_append(EntryKind.CONF_CHANGE, encode_conf_entry(conf, change))

    def _changed_conf(self, change: ConfChange) -> ConfState:
        voters, learners = set(self.voters), set(self.learners)
        node = change.node_id
        if node <= 0:
            raise ConfChangeRefused(f"invalid node id {node}")
        if change.op == ConfChangeOp.ADD_LEARNER:
            if node in voters:
                raise ConfChangeRefused(f"{node} is already a voter")
            if node in learners:
                raise ConfChangeRefused(f"{node} is already a learner")
            learners.add(node)
        elif change.op == ConfChangeOp.ADD_VOTER:
            if node in voters:
                raise ConfChangeRefused(f"{node} is already a voter")
            if node in learners:
                pr = self.progress.get(node)
                behind = self.log.last_index() - (pr.match if pr is not None else 0)
                if behind > self.cfg.learner_catch_up_entries:
                    raise ConfChangeRefused(f"learner {node} is {behind} entries behind; promote it once caught up")
                learners.discard(node)
            voters.add(node)
        else:
            if node not in voters and node not in learners:
                raise ConfChangeRefused(f"{node} is not a member")
            voters.discard(node)
            learners.discard(node)
            if not voters:
                raise ConfChangeRefused("removing the last voter would leave no one to decide")
        return ConfState(tuple(sorted(voters)), tuple(sorted(learners)))

    def read_index(self, context: bytes) -> None:
        if self.role == Role.LEADER:
            self._leader_read(context, self.id)
            return
        if self.leader and self.cfg.forward_proposals:
            self._send(Message(T.READ_INDEX, self.id, self.leader, context=context))
            return
        raise NotLeader(self.leader)

    def _leader_read(self, context: bytes, requester: int) -> None:
        """ReadIndex (thesis 6.4): remember the commit index, confirm leadership with a heartbeat quorum."""
        committed = self.log.committed
        if self.mutation == Mutation.STALE_READ or self.voters == {self.id}:
            self._answer_read(committed, context, requester)
            return
        if self.log.term(committed) != self.term:
            self.deferred_reads.append((context, requester))  # answered once this term commits an entry
            return
        self.read_seq += 1
        self.pending_reads.append(_PendingRead(self.read_seq, committed, context, requester))
        self.read_round_needed = True

    def _release_reads(self) -> None:
        if not self.pending_reads:
            return
        acks = sorted(
            (self.read_seq if v == self.id else (self.progress[v].read_ack if v in self.progress else 0))
            for v in self.voters
        )
        confirmed = acks[len(acks) - self.quorum]
        while self.pending_reads and self.pending_reads[0].seq <= confirmed:
            read = self.pending_reads.popleft()
            self._answer_read(read.index, read.context, read.requester)

    def _answer_read(self, index: int, context: bytes, requester: int) -> None:
        if requester == self.id:
            self.read_states.append(ReadState(index, context))
        else:
            self._send(Message(T.READ_INDEX_RESP, self.id, requester, term=self.term, index=index, context=context))

    def transfer_leadership(self, to: int) -> None:
        if self.role != Role.LEADER:
            raise NotLeader(self.leader)
        if to == self.id:
            return
        if to not in self.voters:
            raise TransferRefused(f"{to} is not a voter")
        if self.lead_transferee == to:
            return
        self.lead_transferee = to
        self.election_elapsed = 0  # the transfer must finish within one election timeout
        pr = self.progress[to]
        if pr.match == self.log.last_index():
            self._send(Message(T.TIMEOUT_NOW, self.id, to, term=self.term))
        else:
            pr.paused = False  # catch it up now rather than at the next heartbeat
            self._send_append(to, pr, allow_empty=True)

    # --- status --------------------------------------------------------------------------------

    def status(self) -> Status:
        return Status(
            id=self.id,
            role=self.role,
            term=self.term,
            vote=self.vote,
            leader=self.leader,
            commit=self.log.committed,
            applied=self.log.applied,
            first_index=self.log.first_index(),
            last_index=self.log.last_index(),
            persisted=self.log.persisted,
            conf=self.conf,
            lead_transferee=self.lead_transferee,
            progress={node: pr.describe() for node, pr in sorted(self.progress.items())},
        )
