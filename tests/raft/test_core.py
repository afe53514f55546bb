"""Unit tests of the core's parts: the Ready contract, the log, flow control, codec, sessions, refusals."""

from __future__ import annotations

import contextlib
import random

import msgpack
import pytest

from raft.core import (
    ClientSessions,
    CodecError,
    ConfChange,
    ConfChangeOp,
    ConfChangeRefused,
    Config,
    Entry,
    EntryKind,
    InvalidConfig,
    InvalidMessage,
    InvariantViolated,
    Message,
    MessageType,
    NotLeader,
    ProposalDropped,
    RawNode,
    ReadyMisuse,
    Role,
    SnapshotMeta,
    TransferRefused,
    Verdict,
    bootstrap_state,
    decode_message,
    encode_message,
)
from raft.core.codec import decode_entry, encode_entry
from raft.core.log import RaftLog
from raft.core.progress import Inflights
from raft.core.types import ConfState
from raft.interaction import InteractionEnv


def node(node_id: int = 1, voters: tuple[int, ...] = (1, 2, 3), **config: object) -> RawNode:
    return RawNode(Config(id=node_id, **config), rng=random.Random(node_id), state=bootstrap_state(voters))  # type: ignore[arg-type]


# --- the Ready contract -------------------------------------------------------------------------------


def test_messages_are_withheld_until_the_ready_is_persisted() -> None:
    n = node(pre_vote=False)
    n.campaign()
    rd = n.ready()
    assert rd.needs_persist()
    with pytest.raises(ReadyMisuse, match="persist this Ready"):
        _ = rd.messages
    with pytest.raises(ReadyMisuse):
        _ = rd.committed_entries
    with pytest.raises(ReadyMisuse, match="not persisted"):
        n.advance(rd)
    rd.mark_persisted()
    assert [m.type for m in rd.messages] == [MessageType.VOTE, MessageType.VOTE]
    n.advance(rd)


def test_one_ready_at_a_time() -> None:
    n = node()
    n.campaign()
    rd = n.ready()
    assert not n.has_ready()
    with pytest.raises(ReadyMisuse, match="advance"):
        n.ready()
    rd.mark_persisted()
    n.advance(rd)
    with pytest.raises(ReadyMisuse, match="last ready"):
        n.advance(rd)


def test_a_vote_is_sent_only_with_the_hard_state_that_records_it() -> None:
    voter = node(2)
    voter.step(Message(MessageType.VOTE, 1, 2, term=2, index=1, log_term=1))
    rd = voter.ready()
    assert rd.hard_state is not None
    assert (rd.hard_state.term, rd.hard_state.vote) == (2, 1)
    assert rd.must_sync
    rd.mark_persisted()
    assert [(m.type, m.reject) for m in rd.messages] == [(MessageType.VOTE_RESP, False)]


def test_messages_for_another_node_are_ignored() -> None:
    n = node(2)
    n.step(Message(MessageType.VOTE, 1, 3, term=5, index=1, log_term=1))
    assert n.status().term == 1


@pytest.mark.parametrize(
    "message",
    [
        Message(MessageType.APPEND, 1, 2, term=2, index=1, log_term=1, entries=(Entry(2, 3),)),
        Message(MessageType.APPEND, 1, 2, term=2, index=1, log_term=1, entries=(Entry(3, 2),)),
        Message(MessageType.APPEND, 1, 2, term=2, index=1, log_term=1, entries=(Entry(2, 2), Entry(1, 3))),
        Message(MessageType.SNAPSHOT, 1, 2, term=2),
        Message(MessageType.HEARTBEAT, 0, 2, term=2),
    ],
)
def test_messages_no_correct_peer_sends_are_refused_without_effect(message: Message) -> None:
    n = node(2)
    before = n.status()
    with pytest.raises(InvalidMessage):
        n.step(message)
    assert n.status() == before


def test_invalid_configs_are_refused() -> None:
    with pytest.raises(InvalidConfig, match="election_ticks"):
        RawNode(Config(id=1, election_ticks=2, heartbeat_ticks=2), rng=random.Random(1))
    with pytest.raises(InvalidConfig, match="id"):
        RawNode(Config(id=0), rng=random.Random(1))
    with pytest.raises(ValueError, match="at least one voter"):
        bootstrap_state([])


# --- refusals -----------------------------------------------------------------------------------------


def leader_env() -> InteractionEnv:
    env = InteractionEnv()
    env.run("add-nodes 3 voters=(1,2,3)")
    env.run("campaign 1")
    env.run("stabilize")
    return env


def test_a_follower_without_a_leader_refuses_proposals_and_reads() -> None:
    n = node()
    with pytest.raises(NotLeader, match="no leader"):
        n.propose(b"x")
    with pytest.raises(NotLeader):
        n.read_index(b"r")
    with pytest.raises(NotLeader):
        n.propose_conf_change(ConfChange(ConfChangeOp.ADD_LEARNER, 4))
    with pytest.raises(NotLeader):
        n.transfer_leadership(2)


def test_conf_changes_that_cannot_work_are_refused() -> None:
    env = leader_env()
    leader = env.nodes[1].core
    assert leader is not None
    with pytest.raises(ConfChangeRefused, match="already a voter"):
        leader.propose_conf_change(ConfChange(ConfChangeOp.ADD_VOTER, 2))
    with pytest.raises(ConfChangeRefused, match="not a member"):
        leader.propose_conf_change(ConfChange(ConfChangeOp.REMOVE, 9))
    leader.propose_conf_change(ConfChange(ConfChangeOp.REMOVE, 3))
    with pytest.raises(ConfChangeRefused, match="not committed yet"):
        leader.propose_conf_change(ConfChange(ConfChangeOp.REMOVE, 2))
    env.run("stabilize")
    leader.propose_conf_change(ConfChange(ConfChangeOp.REMOVE, 2))
    env.run("stabilize 1 2")
    with pytest.raises(ConfChangeRefused, match="last voter"):
        leader.propose_conf_change(ConfChange(ConfChangeOp.REMOVE, 1))


def test_transfers_go_only_to_voters_and_block_proposals() -> None:
    env = leader_env()
    leader = env.nodes[1].core
    assert leader is not None
    with pytest.raises(TransferRefused, match="not a voter"):
        leader.transfer_leadership(7)
    leader.transfer_leadership(2)
    with pytest.raises(ProposalDropped, match="transferred"):
        leader.propose(b"x")
    env.run("stabilize")
    assert env.nodes[2].core is not None
    assert env.nodes[2].core.status().role == Role.LEADER


def test_the_uncommitted_tail_is_bounded() -> None:
    env = InteractionEnv()
    env.run("add-nodes 3 voters=(1,2,3)")
    env.nodes[1].config = Config(id=1, max_uncommitted_bytes=200)
    env.run("restart 1")
    env.run("campaign 1")
    env.run("stabilize")
    leader = env.nodes[1].core
    assert leader is not None
    env.run("partition 1 | 2 3")
    accepted = 0
    with pytest.raises(ProposalDropped, match="uncommitted"):  # noqa: PT012 - the limit is hit after a few
        while accepted < 20:
            leader.propose(b"x" * 40)
            accepted += 1
    assert 1 <= accepted < 5


# --- the log and flow control -------------------------------------------------------------------------


def test_find_conflict_by_term_skips_a_whole_term() -> None:
    entries = [Entry(t, i) for i, t in enumerate([1, 3, 3, 3, 5, 5, 5, 5, 5], start=1)]
    log = RaftLog(SnapshotMeta(), entries, 0)
    assert log.find_conflict_by_term(9, 2) == (1, 1)
    assert log.find_conflict_by_term(9, 4) == (4, 3)
    assert log.find_conflict_by_term(9, 5) == (9, 5)
    assert log.find_conflict_by_term(20, 5) == (9, 5)


def test_the_log_never_overwrites_a_committed_entry() -> None:
    log = RaftLog(SnapshotMeta(), [Entry(1, 1), Entry(1, 2), Entry(1, 3)], 2)
    with pytest.raises(InvariantViolated, match="committed entry 2"):
        log.append([Entry(2, 2)])
    log.append([Entry(2, 3)])
    assert [e.term for e in log.entries] == [1, 1, 2]
    with pytest.raises(InvariantViolated, match="gap"):
        log.append([Entry(2, 9)])


def test_a_hard_state_commit_beyond_the_log_is_refused() -> None:
    with pytest.raises(InvariantViolated, match="beyond the last log index"):
        RaftLog(SnapshotMeta(), [Entry(1, 1)], 5)


def test_inflights_bound_messages_and_bytes() -> None:
    window = Inflights(max_count=3, max_bytes=100)
    window.add(5, 10)
    window.add(9, 10)
    assert not window.full()
    window.add(12, 90)
    assert window.full()
    window.free_le(9)
    assert window.count() == 1
    assert not window.full()
    window.add(13, 20)
    assert window.count() == 2
    assert window.full(), "110 bytes in flight: full by bytes before it is full by count"
    window.free_le(13)
    assert not window.full()


# --- codec --------------------------------------------------------------------------------------------


def test_every_message_field_survives_encoding() -> None:
    m = Message(
        MessageType.SNAPSHOT, 3, 7, term=9, log_term=8, index=100,
        entries=(Entry(9, 101, EntryKind.NORMAL, b"\x00\xff", "client-\u00e9", 42), Entry(9, 102, EntryKind.NOOP)),
        commit=99, reject=True, reject_hint=55, snapshot=SnapshotMeta(90, 7, ConfState((1, 2, 3), (4,))),
        offset=4096, data=b"chunk", done=True, context=b"ctx", read_seq=12, force=True,
    )  # fmt: skip
    assert decode_message(encode_message(m)) == m
    entry = Entry(2, 5, EntryKind.CONF_CHANGE, b"conf", "", 0)
    assert decode_entry(encode_entry(entry)) == entry


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"\xc1",
        msgpack.packb([1, 2, 3]),
        msgpack.packb([99] + [0] * 16),
        msgpack.packb([1, 1, 2, -1, 0, 0, [], 0, False, 0, None, 0, b"", False, b"", 0, False]),
        msgpack.packb([1, 1, 2, 0, 0, 0, [[1, 2]], 0, False, 0, None, 0, b"", False, b"", 0, False]),
        msgpack.packb([1, 1, 2, 0, 0, 0, [], 0, "yes", 0, None, 0, b"", False, b"", 0, False]),
        msgpack.packb([1, 1, 2, 0, 0, 0, [], 0, False, 0, None, 0, "text", False, b"", 0, False]),
    ],
)
def test_malformed_messages_raise_codec_error(payload: bytes) -> None:
    with pytest.raises(CodecError):
        decode_message(payload)


def test_random_bytes_never_crash_the_decoder() -> None:
    rng = random.Random(5)
    for _ in range(2000):
        blob = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 60)))
        with contextlib.suppress(CodecError):
            decode_message(blob)


# --- client sessions ----------------------------------------------------------------------------------


def test_a_retried_request_is_applied_once_and_answered_again() -> None:
    sessions = ClientSessions()
    assert sessions.check("c1", 1).verdict == Verdict.NEW
    sessions.record("c1", 1, b"ok-1")
    assert sessions.check("c1", 1) == (Verdict.DUPLICATE, b"ok-1")
    assert sessions.check("c1", 2).verdict == Verdict.NEW
    sessions.record("c1", 2, b"ok-2")
    assert sessions.check("c1", 1).verdict == Verdict.STALE
    assert sessions.check("c2", 5).verdict == Verdict.SESSION_EXPIRED
    assert sessions.check("", 0).verdict == Verdict.NEW


def test_sessions_are_evicted_least_recently_used_and_survive_snapshots() -> None:
    sessions = ClientSessions(max_clients=2)
    for client in ("a", "b"):
        sessions.record(client, 1, b"r")
    sessions.record("a", 2, b"r2")  # a is now the most recent
    sessions.record("c", 1, b"r")
    assert len(sessions) == 2
    assert sessions.check("b", 2).verdict == Verdict.SESSION_EXPIRED
    restored = ClientSessions.from_bytes(sessions.to_bytes(), max_clients=2)
    assert restored.check("a", 2) == (Verdict.DUPLICATE, b"r2")
    assert restored.check("c", 1).verdict == Verdict.DUPLICATE
    with pytest.raises(CodecError):
        ClientSessions.from_bytes(b"\x93\x01")
