"""Targeted scenarios from the Raft paper and thesis, each driven step by step."""

from __future__ import annotations

import random
from pathlib import Path

from raft.core import Config, Message, RawNode, Role, bootstrap_state
from raft.interaction import InteractionEnv
from raft.storage import FileStorage


def env_with(spec: str) -> InteractionEnv:
    env = InteractionEnv()
    assert env.run(spec) == "ok"
    return env


def run(env: InteractionEnv, *lines: str) -> str:
    out = ""
    for line in lines:
        out = env.run(line)
        assert not out.startswith(("error", "RaftError", "InvariantViolated")), f"{line}: {out}"
    return out


def core(env: InteractionEnv, node: int) -> RawNode:
    node_core = env.nodes[node].core
    assert node_core is not None
    return node_core


def leaders(env: InteractionEnv) -> list[int]:
    return [i for i, n in env.nodes.items() if n.core is not None and n.core.raft.role == Role.LEADER]


def tick_until_leader(env: InteractionEnv, nodes: list[int]) -> int:
    """Tick `nodes` one tick at a time, delivering everything, until one of them leads."""
    group = " ".join(map(str, nodes))
    for _ in range(300):
        for node in nodes:
            run(env, f"tick-heartbeat {node}")
        run(env, f"stabilize {group}")
        elected = [n for n in leaders(env) if n in nodes]
        if elected:
            return elected[0]
    raise AssertionError(f"no leader among {nodes}")


# --- Figure 8 ----------------------------------------------------------------------------------------


def test_figure8_an_entry_from_an_older_term_is_not_committed_by_counting_replicas() -> None:
    env = env_with("add-nodes 5 voters=(1,2,3,4,5) prevote=false checkquorum=false max-msg-bytes=0")
    run(env, "campaign 1", "stabilize")
    run(env, "partition 1 2 | 3 4 5", "propose 1 from-term-2", "stabilize 1 2")
    run(env, "crash 1", "campaign 5", "process-ready 5", "deliver-msgs 3 4", "process-ready 3 4", "deliver-msgs 5")
    run(env, "partition 5 | 1 2 3 4", "process-ready 5", "crash 5")
    run(env, "partition 2 5 | 1 3 4", "restart 1", "campaign 1", "stabilize 1 3 4", "campaign 1")
    # Step by step, so that S1 crashes after S3 and S4 acknowledge index 3 but before they get index 4.
    for _ in range(3):  # votes; the no-op, rejected; index 3 alone, acknowledged
        run(env, "process-ready 1", "deliver-msgs 3 4", "process-ready 3 4", "deliver-msgs 1")
    s1 = core(env, 1).raft
    assert s1.role == Role.LEADER
    assert s1.term == 4
    stored = [n for n in (1, 3, 4) if core(env, n).raft.log.term(3) == 2]
    assert stored == [1, 3, 4], "a majority stores index 3 of term 2"
    assert s1.progress[3].match == 3
    assert s1.progress[4].match == 3
    assert s1.log.committed == 2, "index 3 (term 2) must not count as committed"
    # (d) S1 crashes; S5 comes back, wins with S2, S3, S4 and replaces index 3 with its own: no harm done.
    run(env, "crash 1", "heal", "restart 5", "campaign 5", "stabilize 2 3 4 5", "campaign 5", "stabilize 2 3 4 5")
    assert leaders(env) == [5]
    for node in (2, 3, 4, 5):
        log = core(env, node).raft.log
        assert log.committed >= 4
        assert log.term(3) == 3


def test_figure8_mutation_commits_the_old_entry_and_loses_it() -> None:
    """With the current-term check removed, the same schedule commits index 3 of term 2, then loses it."""
    env = env_with(
        "add-nodes 5 voters=(1,2,3,4,5) prevote=false checkquorum=false max-msg-bytes=0 mutation=commit_any_term"
    )
    run(env, "campaign 1", "stabilize")
    run(env, "partition 1 2 | 3 4 5", "propose 1 from-term-2", "stabilize 1 2")
    run(env, "crash 1", "campaign 5", "process-ready 5", "deliver-msgs 3 4", "process-ready 3 4", "deliver-msgs 5")
    run(env, "partition 5 | 1 2 3 4", "process-ready 5", "crash 5")
    run(env, "partition 2 5 | 1 3 4", "restart 1", "campaign 1", "stabilize 1 3 4", "campaign 1")
    for _ in range(3):  # votes; the no-op, rejected; index 3 alone, acknowledged
        run(env, "process-ready 1", "deliver-msgs 3 4", "process-ready 3 4", "deliver-msgs 1")
    s1 = core(env, 1).raft
    assert s1.log.committed == 3
    committed = s1.log.entry(3)
    assert committed.term == 2
    run(env, "crash 1", "heal", "restart 5", "campaign 5", "stabilize 2 3 4 5", "campaign 5", "stabilize 2 3 4 5")
    survivor = core(env, 5).raft.log
    assert survivor.committed >= 3
    assert survivor.entry(3) != committed, "the entry S1 reported committed is gone"


# --- elections ---------------------------------------------------------------------------------------


def test_split_vote_elects_nobody_then_randomized_timeouts_break_the_tie() -> None:
    env = env_with("add-nodes 4 voters=(1,2,3,4) prevote=false checkquorum=false")
    run(env, "partition 1 2 | 3 4", "campaign 1", "campaign 3", "stabilize")
    for node in (1, 3):
        r = core(env, node).raft
        assert (r.role, r.term, r.vote) == (Role.CANDIDATE, 2, node)
        assert sum(r.votes.values()) == 2, "two of four votes: no majority"
    assert leaders(env) == []
    run(env, "heal")
    tick_until_leader(env, [1, 2, 3, 4])
    assert len(leaders(env)) == 1
    leader = core(env, leaders(env)[0]).raft
    assert leader.term >= 3
    assert all(core(env, n).raft.leader == leader.id for n in range(1, 5))


def test_a_partitioned_old_leader_cannot_commit() -> None:
    env = env_with("add-nodes 5 voters=(1,2,3,4,5)")
    run(env, "campaign 1", "stabilize", "partition 1 2 | 3 4 5")
    run(env, "propose 1 stale", "stabilize 1 2")
    old = core(env, 1).raft
    assert old.log.last_index() == 3
    assert old.log.committed == 2, "two of five nodes cannot commit"
    # The majority side stops hearing from 1; once its lease runs out one of them is elected.
    new = tick_until_leader(env, [3, 4, 5])
    assert old.role == Role.LEADER, "node 1 does not know yet"
    run(env, f"propose {new} fresh", "stabilize 3 4 5")
    assert core(env, new).raft.log.committed == 4
    run(env, "heal", f"tick-heartbeat {new}", "stabilize")
    for node in range(1, 6):
        r = core(env, node).raft
        assert r.leader == new
        assert r.log.committed == 4
        assert [e.data for e in r.log.entries if e.data and e.kind.name == "NORMAL"] == [b"fresh"]
    assert all(e.data != b"stale" for n in env.nodes.values() for e in n.applied)


def test_a_removed_leader_hands_over_and_stays_quiet() -> None:
    env = env_with("add-nodes 3 voters=(1,2,3)")
    run(env, "campaign 1", "stabilize", "propose-conf-change 1 remove 1", "stabilize")
    removed = core(env, 1).raft
    assert removed.role == Role.FOLLOWER
    assert removed.voters == frozenset({2, 3})
    assert leaders(env) in ([2], [3])
    new_leader = leaders(env)[0]
    run(env, f"propose {new_leader} after-removal", "stabilize 2 3")
    term = core(env, new_leader).raft.term
    for _ in range(5):
        run(env, "tick-election 1", "stabilize")
    assert core(env, 1).raft.role == Role.FOLLOWER
    assert core(env, new_leader).raft.role == Role.LEADER
    assert core(env, new_leader).raft.term == term, "the removed node did not disturb the cluster"
    assert [e.data for e in env.nodes[5 - new_leader].applied][-1] == b"after-removal"


def test_a_follower_far_behind_catches_up_by_chunked_install_snapshot() -> None:
    env = env_with("add-nodes 3 voters=(1,2,3) chunk=16")
    run(env, "campaign 1", "stabilize", "partition 3 | 1 2")
    for i in range(20):
        run(env, f"propose 1 value-{i:02d}")
    run(env, "stabilize 1 2", "compact 1 22", "compact 2 22", "heal", "propose 1 last")
    trace = run(env, "stabilize")
    chunks = [line for line in trace.splitlines() if "SNAPSHOT term" in line and "->3" in line]
    assert len(chunks) > 5, "the snapshot went in many 16-byte chunks"
    assert core(env, 3).raft.log.snapshot.index == 22

    def values(node: int) -> list[bytes]:
        return [e.data for e in env.nodes[node].applied if e.kind.name == "NORMAL" and e.data]

    assert values(3) == values(1)
    assert len(values(3)) == 21
    assert env.nodes[3].applied[-1].data == b"last"


# --- all nodes restart at once, on real disks ---------------------------------------------------------


class DiskCluster:
    """Three RawNodes on FileStorage, with a perfect in-process network."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.ids = (1, 2, 3)
        self.storages: dict[int, FileStorage] = {}
        self.nodes: dict[int, RawNode] = {}
        self.applied: dict[int, list[bytes]] = {}
        for node in self.ids:
            storage = FileStorage.open(root / f"n{node}")
            storage.initialize(bootstrap_state(list(self.ids)))
            storage.close()
        self.start_all()

    def start_all(self) -> None:
        for node in self.ids:
            storage = FileStorage.open(self.root / f"n{node}")
            self.storages[node] = storage
            self.nodes[node] = RawNode(Config(id=node), rng=random.Random(node), state=storage.load())
            self.applied[node] = []

    def crash_all(self) -> None:
        for storage in self.storages.values():
            storage.close()
        self.nodes.clear()

    def stabilize(self) -> None:
        inbox: list[Message] = []
        for _ in range(1000):
            moved = False
            for node_id, node in self.nodes.items():
                while node.has_ready():
                    moved = True
                    rd = node.ready()
                    self.storages[node_id].persist(rd)
                    inbox.extend(rd.messages)
                    self.applied[node_id].extend(e.data for e in rd.committed_entries if e.data and e.seq)
                    node.advance(rd)
            while inbox:
                moved = True
                m = inbox.pop(0)
                self.nodes[m.dst].step(m)
            if not moved:
                return
        raise AssertionError("did not settle")

    def leader(self) -> RawNode:
        return next(n for n in self.nodes.values() if n.raft.role == Role.LEADER)


def test_all_nodes_restarting_at_once_keep_every_acknowledged_write(tmp_path: Path) -> None:
    cluster = DiskCluster(tmp_path)
    cluster.nodes[1].campaign()
    cluster.stabilize()
    acknowledged = []
    for i in range(1, 31):
        cluster.leader().propose(b"w%d" % i, client_id="c", seq=i)
        cluster.stabilize()
        acknowledged.append(b"w%d" % i)  # applied on the leader: the client got its answer
    assert cluster.applied[1] == acknowledged
    before = {node: (n.raft.term, n.raft.vote) for node, n in cluster.nodes.items()}

    cluster.crash_all()
    cluster.start_all()
    for node, n in cluster.nodes.items():
        assert (n.raft.term, n.raft.vote) == before[node], "term and vote survive the restart"
    cluster.nodes[2].campaign()
    cluster.stabilize()
    assert cluster.leader().raft.id == 2
    for node in cluster.ids:
        assert cluster.applied[node] == acknowledged, f"node {node} lost acknowledged writes"
    cluster.leader().propose(b"after", client_id="c", seq=31)
    cluster.stabilize()
    assert all(cluster.applied[n][-1] == b"after" for n in cluster.ids)
    cluster.crash_all()
