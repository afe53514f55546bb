"""The driver (RaftNode): several nodes in one event loop, over real loopback TCP and real FileStorage."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import msgpack
import pytest

from raft.core import NotLeader, Role
from raft.demo import KVStateMachine
from raft.node import (
    NodeConfig,
    NodeIdentityError,
    OutcomeUnknown,
    ProposalLost,
    RaftNode,
    SessionExpired,
    parse_node_id,
    parse_peers,
)
from tests.helpers import free_port
from tests.raft.support import run

SECRET = b"node-tests-secret-0123456789"


def cmd(*parts: Any) -> bytes:
    return msgpack.packb(list(parts), use_bin_type=True)  # type: ignore[no-any-return]


class Cluster:
    """RaftNodes in this event loop; ids 1..n are founders."""

    def __init__(self, base: Path, size: int = 3, **config: Any) -> None:
        self.base = base
        self.config = {"election_timeout": 0.3, **config}
        self.addresses = {i: ("127.0.0.1", free_port()) for i in range(1, size + 1)}
        self.founders = dict(self.addresses)
        self.nodes: dict[int, RaftNode] = {}

    def node_config(self, node_id: int, **extra: Any) -> NodeConfig:
        peers = self.founders if node_id in self.founders else {}
        settings = {**self.config, **extra}
        return NodeConfig(
            node_id=node_id,
            data_dir=self.base / f"n{node_id}",
            listen=self.addresses[node_id],
            secret=SECRET,
            peers=peers,
            **settings,
        )

    async def start(self, node_id: int, **extra: Any) -> RaftNode:
        node = RaftNode(self.node_config(node_id, **extra), KVStateMachine())
        await node.start()
        self.nodes[node_id] = node
        return node

    async def start_all(self) -> None:
        for node_id in self.addresses:
            await self.start(node_id)

    async def stop(self, node_id: int) -> None:
        await self.nodes.pop(node_id).stop()

    async def stop_all(self) -> None:
        for node_id in list(self.nodes):
            await self.stop(node_id)

    async def leader(self, timeout: float = 10.0, among: list[int] | None = None) -> RaftNode:
        deadline = time.monotonic() + timeout
        while True:
            nodes = [self.nodes[i] for i in (among or list(self.nodes))]
            leaders = [n for n in nodes if n.is_leader]
            if len(leaders) == 1 and all(n.leader_id == leaders[0].id for n in nodes):
                return leaders[0]
            assert time.monotonic() < deadline, {n.id: (n.role, n.leader_id, n.term) for n in nodes}
            await asyncio.sleep(0.02)

    async def until(self, predicate: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            await asyncio.sleep(0.02)

    def data(self, node_id: int) -> dict[str, Any]:
        fsm = self.nodes[node_id].fsm
        assert isinstance(fsm, KVStateMachine)
        return fsm.data


async def with_cluster(tmp_path: Path, scenario: Callable[[Cluster], Awaitable[None]], **config: Any) -> None:
    cluster = Cluster(tmp_path, **config)
    await cluster.start_all()
    try:
        await scenario(cluster)
    finally:
        await cluster.stop_all()


def test_writes_through_leader_and_followers_apply_once_and_read_linearizably(tmp_path: Path) -> None:
    async def scenario(c: Cluster) -> None:
        leader = await c.leader()
        follower = next(n for n in c.nodes.values() if not n.is_leader)
        assert msgpack.unpackb(await leader.propose(cmd("set", "a", 1), client_id="c1", seq=1)) is None
        # A follower forwards to the leader and answers once it applied the entry itself.
        assert msgpack.unpackb(await follower.propose(cmd("incr", "a"), client_id="c1", seq=2)) == 2
        assert c.data(follower.id)["a"] == 2
        # The same request again (a client retrying after a lost answer) is applied once.
        assert msgpack.unpackb(await follower.propose(cmd("incr", "a"), client_id="c1", seq=2)) == 2
        assert msgpack.unpackb(await leader.propose(cmd("incr", "a"), client_id="c1", seq=2)) == 2
        with pytest.raises(SessionExpired):
            await leader.propose(cmd("incr", "a"), client_id="c1", seq=1)  # older than the last one
        with pytest.raises(SessionExpired):
            await leader.propose(cmd("incr", "a"), client_id="never-seen", seq=5)
        # ReadIndex on a follower: once it returns, everything acknowledged before is applied here.
        other = next(n for n in c.nodes.values() if not n.is_leader and n is not follower)
        await leader.propose(cmd("set", "b", "x"))
        index = await other.read_index()
        assert index >= leader.commit_index - 1
        assert c.data(other.id)["b"] == "x"
        assert c.data(other.id)["a"] == 2
        # Proposals that queue together are committed together (fewer fsyncs than entries).
        before = leader.stats.fsyncs
        results = await asyncio.gather(*(leader.propose(cmd("incr", "n")) for _ in range(200)))
        assert sorted(msgpack.unpackb(r) for r in results) == list(range(1, 201))
        assert leader.stats.fsyncs - before < 100
        status = leader.status()
        assert status["role"] == "leader"
        assert status["leader_id"] == leader.id
        assert status["commit_index"] == status["applied_index"] == leader.applied_index
        assert set(status["peers"]) == {str(n) for n in c.nodes if n != leader.id}
        assert status["log_bytes"] > 0
        assert status["log_entries"] == status["last_index"] - status["first_index"] + 1
        for peer in status["peers"].values():
            assert peer["match_index"] > 0
            assert peer["last_contact_ms"] is not None
            assert peer["connected"]

    run(with_cluster(tmp_path, scenario))


def test_wait_applied_tells_a_replaced_entry_from_an_unknown_one(tmp_path: Path) -> None:
    async def scenario(c: Cluster) -> None:
        leader = await c.leader()
        index, term = leader.propose_nowait(cmd("set", "k", 1))
        assert msgpack.unpackb(await leader.wait_applied(index, term)) is None
        with pytest.raises(ProposalLost):
            await leader.wait_applied(index, term - 1)  # another term's entry took that index
        with pytest.raises(OutcomeUnknown):
            await leader.wait_applied(leader.applied_index + 1000, term, timeout=0.2)
        follower = next(n for n in c.nodes.values() if not n.is_leader)
        with pytest.raises(NotLeader):
            follower.propose_nowait(cmd("set", "k", 2))

    run(with_cluster(tmp_path, scenario))


def test_leadership_transfer_and_membership_changes(tmp_path: Path) -> None:
    async def scenario(c: Cluster) -> None:
        leader = await c.leader()
        target = next(n for n in c.nodes.values() if not n.is_leader)
        await leader.transfer_leadership(target.id)
        assert (await c.leader()).id == target.id
        for i in range(60):
            await target.propose(cmd("set", f"k{i}", i))
        # A new node joins through a follower: address, learner, caught up (from a snapshot: the
        # log is compacted every ~20 entries), then promoted to voter.
        c.addresses[4] = ("127.0.0.1", free_port())
        via = next(n for n in c.nodes.values() if not n.is_leader)
        joiner = await c.start(4, join=via.config.listen)
        await c.until(lambda: 4 in target.raw.raft.voters, 20, "node 4 to become a voter")
        await c.until(lambda: c.data(4).get("k59") == 59, 10, "node 4 to catch up")
        assert joiner.stats.snapshots_installed >= 1
        assert joiner.cluster_id == target.cluster_id
        # A learner stays a learner.
        c.addresses[5] = ("127.0.0.1", free_port())
        await c.start(5, join=target.config.listen, join_as_learner=True)
        await c.until(lambda: 5 in target.raw.raft.learners, 20, "node 5 to become a learner")
        await c.until(lambda: c.data(5).get("k59") == 59, 10, "node 5 to catch up")
        assert 5 not in target.raw.raft.voters
        await target.add_member(5, c.addresses[5])  # promoted once asked, being caught up
        assert 5 in target.raw.raft.voters
        # Remove a follower, then the leader itself: the rest elect a new leader and go on.
        follower = next(i for i in (1, 2, 3) if i != target.id)
        await joiner.remove_member(follower)  # any node may ask; it goes to the leader
        assert follower not in target.raw.raft.voters
        await target.remove_member(target.id)
        rest = [i for i in c.nodes if i not in (follower, target.id)]
        new = await c.leader(among=rest)
        assert new.id != target.id
        await new.propose(cmd("set", "after", 1))
        await c.until(lambda: all(c.data(i).get("after") == 1 for i in rest), 10, "the rest to apply")
        assert sorted(new.raw.raft.voters) == sorted(rest)

    run(with_cluster(tmp_path, scenario, snapshot_entries=20), timeout=90)


def test_restart_replays_the_log_and_the_snapshot(tmp_path: Path) -> None:
    async def scenario() -> None:
        c = Cluster(tmp_path, snapshot_entries=25)
        await c.start_all()
        leader = await c.leader()
        for _ in range(70):
            await leader.propose(cmd("incr", "counter"))
        await c.until(lambda: all(c.data(i).get("counter") == 70 for i in c.nodes), 10, "all to apply")
        await c.stop_all()
        await c.start_all()
        await c.leader()
        await c.until(lambda: all(c.data(i).get("counter") == 70 for i in c.nodes), 10, "replay after restart")
        assert all(n.status()["snapshot"] is not None for n in c.nodes.values())
        await c.stop_all()

    run(scenario())


def test_a_data_dir_of_another_node_or_cluster_is_refused(tmp_path: Path) -> None:
    async def scenario() -> None:
        c = Cluster(tmp_path)
        await c.start_all()
        await c.leader()
        await c.stop_all()
        wrong_node = NodeConfig(
            node_id=2, data_dir=tmp_path / "n1", listen=("127.0.0.1", free_port()), secret=SECRET, peers=c.founders
        )
        with pytest.raises(NodeIdentityError, match="belongs to node 1, not node 2"):
            await RaftNode(wrong_node, KVStateMachine()).start()
        other_cluster = NodeConfig(
            node_id=1,
            data_dir=tmp_path / "n1",
            listen=c.addresses[1],
            secret=SECRET,
            peers={1: c.addresses[1], 7: ("127.0.0.1", 1), 8: ("127.0.0.1", 2)},
        )
        with pytest.raises(NodeIdentityError, match="belongs to cluster"):
            await RaftNode(other_cluster, KVStateMachine()).start()
        (tmp_path / "n1" / "identity.json").unlink()
        with pytest.raises(NodeIdentityError, match="no identity.json"):
            await RaftNode(c.node_config(1), KVStateMachine()).start()
        empty = NodeConfig(node_id=9, data_dir=tmp_path / "n9", listen=("127.0.0.1", free_port()), secret=SECRET)
        with pytest.raises(NodeIdentityError, match="needs peers"):
            await RaftNode(empty, KVStateMachine()).start()

    run(scenario())


def test_a_slow_disk_does_not_cost_the_leader_its_followers(tmp_path: Path) -> None:
    """While a leader's fsync hangs for longer than the election timeout, its heartbeats still go out."""

    async def scenario(c: Cluster, *, direct: bool) -> int:
        leader = await c.leader()
        term = leader.term
        if not direct:
            leader._direct_heartbeat = lambda now: None  # type: ignore[method-assign]
        storage = leader._storage
        assert storage is not None
        original = storage.persist

        def slow_persist(rd: Any) -> None:
            storage.persist = original  # type: ignore[method-assign]  # only this once
            time.sleep(0.9)  # longer than the longest randomized election timeout (0.6 s)
            original(rd)

        storage.persist = slow_persist  # type: ignore[method-assign]
        with contextlib.suppress(OutcomeUnknown, ProposalLost):  # lost when another leader took over
            await leader.propose(cmd("set", "slow", 1), timeout=10)
        await asyncio.sleep(0.3)
        return max(n.term for n in c.nodes.values()) - term

    async def measure(direct: bool) -> int:
        cluster = Cluster(tmp_path / ("on" if direct else "off"))
        await cluster.start_all()
        try:
            return await scenario(cluster, direct=direct)
        finally:
            await cluster.stop_all()

    assert run(measure(direct=True)) == 0  # no election: heartbeats went out during the fsync
    assert run(measure(direct=False)) > 0  # without them the followers elect another leader


def test_parsers() -> None:
    assert parse_node_id("node-3") == 3
    assert parse_node_id(7) == 7
    with pytest.raises(ValueError, match="positive integer"):
        parse_node_id("node-x")
    assert parse_peers("node-1=127.0.0.1:7001, 2=:7002") == {1: ("127.0.0.1", 7001), 2: ("127.0.0.1", 7002)}
    with pytest.raises(ValueError, match="listed twice"):
        parse_peers("1=h:1,node-1=h:2")
    with pytest.raises(ValueError, match="host:port"):
        parse_peers("1=nohost")
    with pytest.raises(ValueError, match="twice the heartbeat"):
        NodeConfig(node_id=1, data_dir=Path("x"), listen=("h", 1), secret=SECRET, election_timeout=0.05).validate()
    assert Role.LEADER.name == "LEADER"
