"""The simulator: a sweep of seeds finds no violation, and a broken core is caught within it.

RAFT_SWEEP_SEEDS (default 500) and RAFT_SWEEP_STEPS (default 3000 events per seed) size the sweep;
`make soak-raft SEEDS=N` runs a longer one outside the test suite.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from raft.core import Entry, Mutation
from raft.sim import DEFAULT_STEPS, Checker, SimNode, Simulation, Stats, Violation, run_seed, sweep
from raft.storage import MemoryStorage

BASE_DIR = Path(__file__).resolve().parents[2]
SWEEP_SEEDS = int(os.environ.get("RAFT_SWEEP_SEEDS", "500"))
SWEEP_STEPS = int(os.environ.get("RAFT_SWEEP_STEPS", str(DEFAULT_STEPS)))
JOBS = 2
CHUNK = 100
CHUNKS = [range(start, min(start + CHUNK, SWEEP_SEEDS)) for start in range(0, SWEEP_SEEDS, CHUNK)]


def _report(results: list) -> str:  # type: ignore[type-arg]
    return "\n".join(f"seed {r.seed}: {r.error}\n  replay: {r.command}" for r in results if not r.ok)


@pytest.mark.parametrize("seeds", CHUNKS, ids=lambda r: f"seeds{r.start}-{r.stop - 1}")
def test_sweep_finds_no_violation(seeds: range) -> None:
    results = sweep(seeds, steps=SWEEP_STEPS, jobs=JOBS)
    assert len(results) == len(seeds)
    assert all(r.ok for r in results), _report(results)
    total = Stats()
    for result in results:
        total.add(result.stats)
    # The sweep really went through the faults it claims to inject (a chunk of 100 seeds meets them all).
    assert total.steps >= len(seeds) * SWEEP_STEPS
    assert total.leaders > 2 * len(seeds)
    if len(seeds) < CHUNK:
        return
    for name in (
        "writes_acked", "reads_ok", "crashes", "all_restarts", "partitions", "snapshots_installed",
        "compactions", "conf_changes", "leader_removed", "transfers", "dropped", "duplicate_requests",
    ):  # fmt: skip
        assert getattr(total, name) > 0, f"no {name} in seeds {seeds.start}..{seeds.stop - 1}"
    assert total.snapshot_chunks > total.snapshots_installed, "snapshots travel in several chunks"


@pytest.mark.parametrize(
    "mutation", [Mutation.DOUBLE_VOTE, Mutation.STALE_READ, Mutation.NO_DEDUP, Mutation.COMMIT_ANY_TERM]
)
def test_a_broken_core_fails_the_sweep(mutation: Mutation) -> None:
    results = sweep(range(SWEEP_SEEDS), steps=SWEEP_STEPS, mutation=mutation, jobs=JOBS, stop_on_failure=True)
    failures = [r for r in results if not r.ok]
    assert failures, f"mutation {mutation.value} went unnoticed over {len(results)} seeds"
    first = failures[0]
    assert first.error.startswith(("Violation", "InvariantViolated")), first.error
    assert (
        first.command == f"python -m raft.sim run --seed {first.seed} --steps {SWEEP_STEPS} --mutation {mutation.value}"
    )
    again = run_seed(first.seed, SWEEP_STEPS, mutation)
    assert again.error == first.error, "the seed replays the same failure"


def test_the_printed_command_replays_a_failure(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(BASE_DIR)}
    sweep_run = subprocess.run(
        [sys.executable, "-m", "raft.sim", "sweep", "--seeds", "40", "--jobs", "1", "--mutation", "no_dedup",
         "--stop-on-failure", "--steps", str(SWEEP_STEPS)],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=100, check=False,
    )  # fmt: skip
    assert sweep_run.returncode == 1, sweep_run.stdout + sweep_run.stderr
    replay_lines = [line for line in sweep_run.stdout.splitlines() if line.strip().startswith("replay: ")]
    assert replay_lines, sweep_run.stdout
    command = replay_lines[0].split("replay: ", 1)[1].split()
    assert command[:3] == ["python", "-m", "raft.sim"]
    replay = subprocess.run(
        [sys.executable, *command[1:]], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=100, check=False
    )
    assert replay.returncode == 1
    failure = next(line for line in sweep_run.stdout.splitlines() if line.startswith("FAIL seed"))
    assert failure.split(": ", 1)[1] in replay.stdout


def test_a_seed_replays_exactly() -> None:
    first, second = run_seed(11, 1500), run_seed(11, 1500)
    assert first.ok
    assert first.stats == second.stats


def test_the_liveness_check_fails_when_faults_never_heal() -> None:
    class NeverHealed(Simulation):
        def _heal(self) -> None:
            super()._heal()
            ids = sorted(self.nodes)
            self.blocked = {(a, b) for a in ids for b in ids if a != b}  # the network stays cut

    result = NeverHealed(3, steps=800).run()
    assert not result.ok
    assert "liveness" in result.error


def _node(node_id: int) -> SimNode:
    return SimNode(node_id, MemoryStorage())


def test_the_checker_rejects_conflicting_applied_entries() -> None:
    checker = Checker()
    checker.apply(_node(1), Entry(2, 5, data=b"a"))
    checker.apply(_node(2), Entry(2, 5, data=b"a"))
    with pytest.raises(Violation, match="state machine safety"):
        checker.apply(_node(3), Entry(3, 5, data=b"b"))


def test_the_checker_rejects_log_matching_violations() -> None:
    checker = Checker()
    one, two = _node(1), _node(2)
    one.storage.save(entries=[Entry(1, 1), Entry(1, 2, data=b"x")])
    checker.persisted(one, [Entry(1, 1), Entry(1, 2, data=b"x")])
    two.storage.save(entries=[Entry(1, 1), Entry(1, 2, data=b"y")])
    with pytest.raises(Violation, match="log matching"):
        checker.persisted(two, [Entry(1, 1), Entry(1, 2, data=b"y")])


def test_the_checker_rejects_differing_snapshots() -> None:
    checker = Checker()
    checker.snapshot(_node(1), 9, b"state")
    with pytest.raises(Violation, match="snapshot at 9"):
        checker.snapshot(_node(2), 9, b"other state")
