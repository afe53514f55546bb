"""make bench-raft-cluster: the Raft driver and transport over real processes (raft.demo, fsync on).

Anchor: a one-node cluster (the same driver, storage and client path, no replication), in the same
run. Against it, a three-node cluster on loopback:

  - sequential writes (one client, one request at a time): p50 and p99 latency, through the
    leader and through a follower (which forwards to the leader and answers once it applied);
  - concurrent writes (64 in flight over 8 connections to the leader) for a few seconds: writes/s;
  - failover: kill -9 of the leader, time until the survivors agree on a new leader and a write
    through one of them succeeds.

Medians of BENCH_ROUNDS rounds (3). Run it as `flock /tmp/helios-bench.lock make bench-raft-cluster`
on a shared machine; absolute figures are noisy there, the ratios measured in one run less so.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import statistics
import struct
import sys
import tempfile
import time
from pathlib import Path

import msgpack

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))

from tests.e2e.raft_cluster import KVClient, RaftCluster  # noqa: E402 - after the path is set

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
SEQUENTIAL = int(os.environ.get("BENCH_SEQUENTIAL", "300"))
CONCURRENT_SECONDS = float(os.environ.get("BENCH_SECONDS", "3"))
LENGTH = struct.Struct(">I")


def out(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def sequential(client: KVClient, count: int, prefix: str) -> tuple[float, float]:
    """(p50, p99) in milliseconds of `count` writes one after the other."""
    latencies = []
    for n in range(count):
        started = time.perf_counter()
        status, value = client.set(f"{prefix}{n}", n)
        if status != "ok":
            raise SystemExit(f"write failed during the benchmark: {status} {value}")
        latencies.append((time.perf_counter() - started) * 1000)
    return percentile(latencies, 0.5), percentile(latencies, 0.99)


async def _pipeline(port: int, seconds: float, in_flight: int, counter: list[int], tag: str) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    client_id = os.urandom(6).hex() + tag
    seqs = itertools.count(1)
    deadline = time.monotonic() + seconds
    pending = 0

    def send() -> None:
        nonlocal pending
        seq = next(seqs)
        payload = msgpack.packb([seq, "set", [f"c{tag}-{seq}", seq, client_id, seq]], use_bin_type=True)
        writer.write(LENGTH.pack(len(payload)) + payload)
        pending += 1

    for _ in range(in_flight):
        send()
    while pending:
        (length,) = LENGTH.unpack(await reader.readexactly(LENGTH.size))
        answer = msgpack.unpackb(await reader.readexactly(length), raw=False)
        pending -= 1
        if answer[1] == "ok":
            counter[0] += 1
        if time.monotonic() < deadline:
            send()
    writer.close()


def concurrent(port: int, seconds: float, connections: int = 8, in_flight: int = 8) -> float:
    counter = [0]

    async def run() -> None:
        await asyncio.gather(*(_pipeline(port, seconds, in_flight, counter, str(i)) for i in range(connections)))

    started = time.perf_counter()
    asyncio.run(run())
    return counter[0] / (time.perf_counter() - started)


def failover(cluster: RaftCluster) -> float:
    leader = cluster.wait_leader()
    killed = time.perf_counter()
    cluster.kill(leader)
    survivors = [n for n in cluster.nodes if n != leader]
    new = cluster.wait_leader(survivors, timeout=30)
    client = cluster.client(new)
    while client.set("failover", 1)[0] != "ok":
        time.sleep(0.01)
    elapsed = time.perf_counter() - killed
    cluster.start(leader)
    cluster.wait_converged(cluster.nodes, timeout=30)
    return elapsed * 1000


def measure(base: Path, size: int) -> dict[str, float]:
    figures: dict[str, float] = {}
    with RaftCluster(base, size, heartbeat="50ms", election_timeout="300ms") as cluster:
        cluster.start_all()
        leader = cluster.wait_leader()
        client = cluster.client(leader)
        sequential(client, 20, "warm")
        figures["leader_p50"], figures["leader_p99"] = sequential(client, SEQUENTIAL, "s")
        if size > 1:
            follower = next(n for n in cluster.nodes if n != leader)
            figures["follower_p50"], figures["follower_p99"] = sequential(cluster.client(follower), SEQUENTIAL, "f")
        figures["writes_per_s"] = concurrent(cluster.nodes[leader].client_port, CONCURRENT_SECONDS)
        status = cluster.status(leader)
        if status is not None:
            figures["fsyncs"] = status["stats"]["fsyncs"]
            figures["applied"] = status["stats"]["applied_entries"]
        if size > 1:
            figures["failover_ms"] = failover(cluster)
    return figures


def main() -> int:
    out(f"raft cluster benchmark: raft.demo processes on loopback, fsync on, {ROUNDS} rounds, medians")
    runs: dict[int, list[dict[str, float]]] = {1: [], 3: []}
    for round_number in range(ROUNDS):
        for size in (1, 3) if round_number % 2 == 0 else (3, 1):
            with tempfile.TemporaryDirectory(prefix="helios-bench-raft-") as tmp:
                runs[size].append(measure(Path(tmp), size))
        out(f"  round {round_number + 1}: 3 nodes {runs[3][-1]}")

    def one(key: str) -> float:
        return statistics.median(r[key] for r in runs[1])

    def three(key: str) -> float:
        return statistics.median(r[key] for r in runs[3])

    out("")
    out(f"{'':38}{'1 node (anchor)':>16}{'3 nodes':>12}{'3 / 1':>10}")
    out(f"{'sequential write via leader, p50 ms':38}{one('leader_p50'):>16.2f}{three('leader_p50'):>12.2f}"
        f"{three('leader_p50') / one('leader_p50'):>10.2f}")  # fmt: skip
    out(f"{'sequential write via leader, p99 ms':38}{one('leader_p99'):>16.2f}{three('leader_p99'):>12.2f}"
        f"{three('leader_p99') / one('leader_p99'):>10.2f}")  # fmt: skip
    out(f"{'sequential write via follower, p50 ms':38}{'':>16}{three('follower_p50'):>12.2f}"
        f"{three('follower_p50') / one('leader_p50'):>10.2f}")  # fmt: skip
    out(f"{'sequential write via follower, p99 ms':38}{'':>16}{three('follower_p99'):>12.2f}"
        f"{three('follower_p99') / one('leader_p99'):>10.2f}")  # fmt: skip
    out(f"{'64 concurrent writes, writes/s':38}{one('writes_per_s'):>16.0f}{three('writes_per_s'):>12.0f}"
        f"{three('writes_per_s') / one('writes_per_s'):>10.2f}")  # fmt: skip
    failovers = [r["failover_ms"] for r in runs[3]]
    out(f"failover after kill -9 of the leader: median {statistics.median(failovers):.0f} ms, "
        f"max {max(failovers):.0f} ms (election timeout 300-600 ms)")  # fmt: skip
    batch = [r["applied"] / r["fsyncs"] for r in runs[3] if r.get("fsyncs")]
    if batch:
        out(f"group commit on the 3-node leader: {statistics.median(batch):.1f} entries per fsync over the run")
    return 0


if __name__ == "__main__":
    sys.exit(main())
