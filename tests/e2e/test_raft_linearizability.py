"""Concurrent clients on three nodes while a nemesis kills, restarts, pauses and partitions them.

Every operation (SET, GET, INCR, compare-and-set on a few keys) is recorded with its invoke and
completion times and its outcome (ok, fail, or unknown after a timeout); the history must be
linearizable by raft.linearizability.check. The same history with one read's answer changed must
not be: the checker can fail on what this cluster produces.
"""

from __future__ import annotations

import dataclasses
import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from raft.linearizability import History, Outcome, Verdict, check
from tests.e2e.raft_cluster import RaftCluster

KEYS = ("x", "y", "z")
RUN_SECONDS = 10.0
OP_TIMEOUT = 1.0


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[RaftCluster]:
    with RaftCluster(tmp_path, 3, proxies=True, snapshot_entries=300) as c:
        c.start_all()
        c.wait_leader()
        yield c


def client_loop(cluster: RaftCluster, node: int, number: int, history: History, stop: threading.Event) -> None:
    rng = random.Random(number)
    client = cluster.client(node, timeout=OP_TIMEOUT)
    while not stop.is_set():
        key = rng.choice(KEYS)
        kind = rng.choice(("get", "get", "set", "incr", "cas"))
        if kind == "get":
            op = history.invoke(client=number, kind="get", key=key)
            status, value = client.get(key)
        elif kind == "set":
            new = rng.randrange(5)
            op = history.invoke(client=number, kind="set", key=key, args=(new,))
            status, value = client.set(key, new)
        elif kind == "incr":
            op = history.invoke(client=number, kind="incr", key=key)
            status, value = client.incr(key)
        else:
            expected, new = rng.randrange(5), rng.randrange(5)
            op = history.invoke(client=number, kind="cas", key=key, args=(expected, new))
            status, value = client.cas(key, expected, new)
        if status == "ok":
            history.ok(op, value)
        elif status == "fail":
            history.fail(op)
            time.sleep(0.05)
        else:
            history.unknown(op)


def nemesis(cluster: RaftCluster, stop: threading.Event, log: list[str]) -> None:
    rng = random.Random(7)
    nodes = list(cluster.nodes)
    faults = ["kill", "pause", "partition", "partition-leader", "kill-leader"]
    while not stop.wait(0.6):
        fault = faults[len(log) % len(faults)]
        leader = next((s["leader_id"] for n in nodes if (s := cluster.status(n)) and s["leader_id"]), nodes[0])
        victim = leader if fault.endswith("leader") else rng.choice(nodes)
        log.append(f"{fault} {victim}")
        if fault.startswith("kill"):
            cluster.kill(victim)
            stop.wait(0.8)
            cluster.start(victim)
        elif fault == "pause":
            cluster.pause(victim)
            stop.wait(1.0)
            cluster.resume(victim)
        else:
            cluster.partition({victim}, [n for n in nodes if n != victim])
            stop.wait(1.2)
            cluster.heal()


def test_history_under_faults_is_linearizable(cluster: RaftCluster) -> None:
    history = History()
    stop = threading.Event()
    faults: list[str] = []
    clients = [
        threading.Thread(target=client_loop, args=(cluster, node, number, history, stop), daemon=True)
        for number, node in enumerate([1, 2, 3, 1, 2, 3])
    ]
    chaos = threading.Thread(target=nemesis, args=(cluster, stop, faults), daemon=True)
    for thread in [*clients, chaos]:
        thread.start()
    time.sleep(RUN_SECONDS)
    stop.set()
    for thread in [*clients, chaos]:
        thread.join(15)
    cluster.heal()
    cluster.wait_converged(cluster.nodes, timeout=20)

    ops = history.operations()
    outcomes = {o: sum(1 for op in ops if op.outcome is o) for o in Outcome}
    print(f"\n{len(ops)} operations { ({o.value: n for o, n in outcomes.items()}) }, faults: {faults}")
    assert outcomes[Outcome.OK] >= 200, outcomes
    assert len(faults) >= 5
    result = check(ops, timeout=60)
    print(result.explain())
    assert result.verdict is Verdict.OK, result.explain()

    # The checker is not a rubber stamp: one read answering a value nobody wrote breaks it.
    reads = [op for op in ops if op.kind == "get" and op.outcome is Outcome.OK]
    tampered = dataclasses.replace(reads[len(reads) // 2], output=99)
    broken = [tampered if op.id == tampered.id else op for op in ops]
    assert check(broken, timeout=60).verdict is Verdict.ILLEGAL
