"""A 3-node Raft cluster of real processes on loopback (raft.demo's key-value store) under faults.

kill -9 of the leader under load, partitions through per-link proxies, SIGSTOP/SIGCONT of the
leader and of a follower, all nodes killed at once. Every test checks that no acknowledged write
is lost and that the nodes converge; figures (failover time) are printed with -s.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.raft_cluster import RaftCluster


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[RaftCluster]:
    with RaftCluster(tmp_path, 3, snapshot_entries=100) as c:
        c.start_all()
        yield c


@pytest.fixture
def proxied(tmp_path: Path) -> Iterator[RaftCluster]:
    with RaftCluster(tmp_path, 3, proxies=True) as c:
        c.start_all()
        yield c


class Writers:
    """Threads writing unique keys through every node until stopped; they remember what was acknowledged."""

    def __init__(self, cluster: RaftCluster, nodes: list[int], *, limit: int = 5000) -> None:
        self.cluster = cluster
        self.acked: dict[str, int] = {}
        self.unknown: set[str] = set()
        self.stop_event = threading.Event()
        self.limit = limit
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, args=(n,), daemon=True) for n in nodes]

    def _run(self, node: int) -> None:
        client = self.cluster.client(node, timeout=2.0)
        for n in range(self.limit):
            if self.stop_event.is_set():
                break
            key = f"w{node}-{n}"
            status, _ = client.set(key, n)
            with self.lock:
                if status == "ok":
                    self.acked[key] = n
                elif status == "unknown":
                    self.unknown.add(key)
            if status != "ok":
                time.sleep(0.02)
        client.close()

    def __enter__(self) -> Writers:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_event.set()
        for thread in self.threads:
            thread.join(10)

    def count(self) -> int:
        with self.lock:
            return len(self.acked)

    def wait_for(self, count: int, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while self.count() < count:
            assert time.monotonic() < deadline, f"only {self.count()} writes acknowledged in {timeout}s"
            time.sleep(0.02)


def assert_all_acked_present(data: dict[str, object], acked: dict[str, int]) -> None:
    missing = {k: v for k, v in acked.items() if data.get(k) != v}
    assert not missing, f"{len(missing)} acknowledged writes lost, e.g. {list(missing.items())[:5]}"


def test_killed_leader_is_replaced_fast_and_rejoins_by_snapshot(cluster: RaftCluster) -> None:
    leader = cluster.wait_leader()
    with Writers(cluster, [1, 2, 3]) as writers:
        writers.wait_for(150)
        killed_at = time.monotonic()
        cluster.kill(leader)
        survivors = [n for n in cluster.nodes if n != leader]
        new_leader = cluster.wait_leader(survivors, timeout=10)
        failover = time.monotonic() - killed_at
        print(f"\nfailover after kill -9 of the leader: {failover * 1000:.0f} ms (new leader {new_leader})")
        # The survivors keep committing, and compact their logs past where the dead node stopped.
        before = writers.count()
        writers.wait_for(before + 400)
        assert failover < 5.0
        cluster.start(leader)
        writers.wait_for(writers.count() + 50)
    data = cluster.wait_converged(cluster.nodes, timeout=20)
    assert_all_acked_present(data, writers.acked)
    rejoined = cluster.status(leader)
    assert rejoined is not None
    assert rejoined["stats"]["snapshots_installed"] >= 1, rejoined
    assert rejoined["role"] == "follower"


def test_partitioned_leader_neither_commits_nor_reads_and_the_cluster_converges(proxied: RaftCluster) -> None:
    cluster = proxied
    old = cluster.wait_leader()
    majority = [n for n in cluster.nodes if n != old]
    client = cluster.client(old, timeout=1.5)
    assert client.set("before", 1)[0] == "ok"
    cluster.partition({old}, majority)
    # The old leader (the minority) cannot commit or serve a linearizable read...
    status, _ = client.set("minority-write", 1, timeout=1.5)
    assert status in ("unknown", "fail")
    status, _ = client.get("before", timeout=1.5)
    assert status in ("unknown", "fail")
    # ...while the majority elects a leader and commits.
    new = cluster.wait_leader(majority, timeout=10)
    assert new != old
    majority_client = cluster.client(new)
    assert majority_client.set("majority-write", 2)[0] == "ok"
    assert majority_client.get("majority-write") == ("ok", 2)
    # A stale read on the minority still answers, from its own old state.
    assert client.get("majority-write", stale=True) == ("ok", None)
    cluster.heal()
    data = cluster.wait_converged(cluster.nodes, timeout=15)
    assert data.get("majority-write") == 2
    assert data.get("before") == 1
    assert "minority-write" not in data  # never committed: the new leader's log replaced it
    cluster.wait_leader()
    assert client.get("majority-write", timeout=3) == ("ok", 2)  # the old leader serves again


def test_paused_leader_and_paused_follower(cluster: RaftCluster) -> None:
    leader = cluster.wait_leader()
    with Writers(cluster, list(cluster.nodes)) as writers:
        writers.wait_for(50)
        cluster.pause(leader)
        survivors = [n for n in cluster.nodes if n != leader]
        new_leader = cluster.wait_leader(survivors, timeout=10)
        writers.wait_for(writers.count() + 50)
        cluster.resume(leader)  # it wakes up as a stale leader, learns the new term and follows
        cluster.wait_until(
            lambda: (cluster.status(leader) or {}).get("leader_id") == new_leader, 10, "the old leader to follow"
        )
        follower = next(n for n in cluster.nodes if n not in (leader, new_leader))
        cluster.pause(follower)
        before = writers.count()
        writers.wait_for(before + 50)  # a majority of two keeps committing
        cluster.resume(follower)
        writers.wait_for(writers.count() + 20)
    data = cluster.wait_converged(cluster.nodes, timeout=20)
    assert_all_acked_present(data, writers.acked)


def test_every_acknowledged_write_survives_killing_all_nodes_at_once(cluster: RaftCluster) -> None:
    cluster.wait_leader()
    with Writers(cluster, list(cluster.nodes)) as writers:
        writers.wait_for(200)
        for node in cluster.nodes:
            cluster.kill(node, signal.SIGKILL)
    acked = dict(writers.acked)
    for node in cluster.nodes:
        cluster.start(node, wait=False)
    for node in cluster.nodes:
        cluster.wait_serving(node)
    cluster.wait_leader()
    data = cluster.wait_converged(cluster.nodes, timeout=20)
    assert_all_acked_present(data, acked)
    assert len(acked) >= 200


def test_a_node_refuses_the_data_dir_of_another_node(cluster: RaftCluster) -> None:
    cluster.wait_leader()
    cluster.kill(1)
    cluster.kill(2)
    cluster.nodes[2].data_dir = cluster.nodes[1].data_dir
    process = cluster.start(2, wait=False)
    assert process.process.wait(20) == 2
    assert "belongs to node 1, not node 2; refusing to start" in process.output()
