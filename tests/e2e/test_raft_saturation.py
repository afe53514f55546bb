"""Under saturation (every core busy, clients writing as fast as they can) the leader keeps its leadership.

PySyncObj lost its leader in 3 of 6 such runs. Here the term must not move for the whole run; the
nodes' own measurements (largest tick lag, ticks forgiven, heartbeats sent while an fsync was
slow) are printed with -s.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.raft_cluster import RaftCluster

SATURATION_SECONDS = 6.0
BURNERS = 3  # busy processes on top of the cluster and its clients, on a 2-core machine
# 300ms is what holds up on a loaded machine; RAFT_SATURATION_ELECTION_TIMEOUT=150ms measures the default.
ELECTION_TIMEOUT = os.environ.get("RAFT_SATURATION_ELECTION_TIMEOUT", "300ms")


@pytest.fixture
def burners() -> Iterator[None]:
    procs = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"], stdout=subprocess.DEVNULL) for _ in range(BURNERS)
    ]
    yield
    for proc in procs:
        proc.kill()
        proc.wait()


def test_leader_keeps_leadership_while_the_machine_is_saturated(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    with RaftCluster(tmp_path, 3, heartbeat="50ms", election_timeout=ELECTION_TIMEOUT) as cluster:
        cluster.start_all()
        leader = cluster.wait_leader()
        before = {n: cluster.status(n) for n in cluster.nodes}
        term = before[leader]["term"]
        request.getfixturevalue("burners")
        stop = threading.Event()
        acked = [0] * 6

        def write(slot: int, node: int) -> None:
            client = cluster.client(node, timeout=2.0)
            n = 0
            while not stop.is_set() and n < 100_000:
                n += 1
                if client.incr(f"k{slot}")[0] == "ok":
                    acked[slot] += 1

        threads = [threading.Thread(target=write, args=(i, 1 + i % 3), daemon=True) for i in range(6)]
        for thread in threads:
            thread.start()
        time.sleep(SATURATION_SECONDS)
        stop.set()
        for thread in threads:
            thread.join(10)
        after = {n: cluster.status(n) for n in cluster.nodes}
        print(f"\n{sum(acked)} writes acknowledged in {SATURATION_SECONDS:.0f}s under {BURNERS} busy processes")
        for node, status in after.items():
            assert status is not None
            print(f"node {node}: role {status['role']} term {status['term']} timing {status['timing']}")
        assert sum(acked) > 100
        for node, status in after.items():
            assert status is not None
            assert status["term"] == term, f"node {node} moved to term {status['term']} (leader lost): {after}"
            assert status["leader_id"] == leader
