"""`make bench-raft`: the Raft core's own throughput, and storage appends with fsync batching.

Core: proposals committed and applied on every node per second, three nodes in one process with a
perfect network (no IO, no delay), so the figure is the protocol's own CPU cost. The anchor, run
in the same process, is the same entries appended to a list and applied to a dict without Raft.

Storage: entries made durable per second by FileStorage.save (one fdatasync per batch) for several
batch sizes. The anchor is the same bytes written with os.write and one os.fdatasync per batch on
a bare file, so the ratio is FileStorage's own overhead (records, CRCs, bookkeeping).

Every figure is the median of several rounds; run it under `flock /tmp/helios-bench.lock` on a
shared machine. Absolute numbers are noisy there; the ratios, measured in the same run, are not.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

from raft.core import Config, Entry, Message, RawNode, Role, bootstrap_state
from raft.storage import FileStorage, MemoryStorage


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _median_rate(rounds: int, work: Callable[[], int]) -> float:
    rates = []
    for _ in range(rounds):
        started = time.perf_counter()
        count = work()
        rates.append(count / (time.perf_counter() - started))
    return statistics.median(rates)


# --- core ----------------------------------------------------------------------------------------


class _Cluster:
    """Nodes with MemoryStorage and a perfect network: every message is delivered at once, in order."""

    def __init__(self, size: int) -> None:
        voters = list(range(1, size + 1))
        self.storages = {i: MemoryStorage() for i in voters}
        for storage in self.storages.values():
            storage.initialize(bootstrap_state(voters))
        self.nodes = {i: RawNode(Config(id=i), rng=random.Random(i), state=self.storages[i].load()) for i in voters}
        self.applied = dict.fromkeys(voters, 0)
        self.nodes[1].campaign()
        self.run()
        assert self.nodes[1].raft.role == Role.LEADER

    def run(self) -> None:
        inbox: list[Message] = []
        moved = True
        while moved:
            moved = False
            for node_id, node in self.nodes.items():
                while node.has_ready():
                    moved = True
                    rd = node.ready()
                    self.storages[node_id].persist(rd)
                    inbox.extend(rd.messages)
                    self.applied[node_id] += sum(1 for e in rd.committed_entries if e.seq)
                    node.advance(rd)
            if inbox:
                moved = True
                batch, inbox = inbox, []
                for m in batch:
                    self.nodes[m.dst].step(m)


def bench_core(proposals: int, batch: int, size: int) -> int:
    cluster = _Cluster(size)
    leader = cluster.nodes[1]
    payload = b"x" * 64
    for start in range(0, proposals, batch):
        for i in range(start, min(start + batch, proposals)):
            leader.propose(payload, client_id="bench", seq=i + 1)
        cluster.run()
    assert all(count == proposals for count in cluster.applied.values()), cluster.applied
    return proposals


def bench_anchor_apply(proposals: int) -> int:
    log: list[Entry] = []
    state: dict[str, int] = {}
    payload = b"x" * 64
    for i in range(proposals):
        entry = Entry(1, i + 1, data=payload, client_id="bench", seq=i + 1)
        log.append(entry)
        state[entry.client_id] = entry.seq
    return proposals


# --- storage ---------------------------------------------------------------------------------------


def bench_storage(directory: Path, entries: int, batch: int) -> int:
    storage = FileStorage.open(directory)
    payload = b"v" * 100
    index = 0
    try:
        while index < entries:
            chunk = [Entry(1, i, data=payload) for i in range(index + 1, index + batch + 1)]
            storage.save(entries=chunk)
            index += batch
    finally:
        storage.close()
    return index


def bench_anchor_fsync(path: Path, entries: int, batch: int) -> int:
    record = b"r" * 140  # about what a 100-byte entry costs on disk with its header
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    written = 0
    try:
        while written < entries:
            os.write(fd, record * batch)
            os.fdatasync(fd)
            written += batch
    finally:
        os.close(fd)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m raft.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--proposals", type=int, default=3000)
    parser.add_argument("--entries", type=int, default=2000, help="entries per storage round")
    args = parser.parse_args(argv)

    _out(f"raft core: {args.proposals} proposals of 64 bytes, median of {args.rounds} rounds")
    anchor = _median_rate(args.rounds, lambda: bench_anchor_apply(args.proposals))
    _out(f"  anchor: append + apply without Raft      {anchor:12,.0f} entries/s")
    for size, batch in ((1, 1), (3, 1), (3, 16), (3, 256)):
        rate = _median_rate(args.rounds, partial(bench_core, args.proposals, batch, size))
        _out(
            f"  {size} node{'s' if size > 1 else ' '}, {batch:3d} proposals per Ready     {rate:12,.0f} committed/s"
            f"   ({rate / anchor:.4f} x anchor)"
        )

    _out(f"raft storage: {args.entries} entries of 100 bytes per round, one fdatasync per batch")
    with tempfile.TemporaryDirectory(prefix="raft-bench-") as tmp:
        base = Path(tmp)
        single = 0.0
        runs = iter(range(1_000_000))  # a fresh directory or file for every round

        def durable(batch: int, count: int) -> int:
            return bench_storage(base / f"s{batch}-{next(runs)}", count, batch)

        def raw(batch: int, count: int) -> int:
            return bench_anchor_fsync(base / f"raw{batch}-{next(runs)}", count, batch)

        for batch in (1, 16, 128):
            count = args.entries if batch > 1 else min(args.entries, 300)
            rate = _median_rate(args.rounds, partial(durable, batch, count))
            anchor_rate = _median_rate(args.rounds, partial(raw, batch, count))
            single = single or rate
            _out(
                f"  batch {batch:4d}: FileStorage {rate:10,.0f} appends/s   anchor write+fdatasync "
                f"{anchor_rate:10,.0f}/s   ratio {rate / anchor_rate:.2f}   x{rate / single:.1f} vs batch 1"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
