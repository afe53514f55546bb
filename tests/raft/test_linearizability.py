"""The linearizability checker: it agrees with every Jepsen etcd history of known verdict, accepts
known-good small histories, rejects known-bad ones, splits by key, and bounds its time."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from raft.linearizability import (
    INCR_ERROR,
    History,
    Operation,
    Outcome,
    Verdict,
    check,
    load_jepsen_dir,
    parse_jepsen_log,
)

# The workplace's corpus beside the project (../shared, present in every session and on CI).
JEPSEN = Path(__file__).resolve().parents[3] / "shared" / "testdata" / "jepsen-etcd"
_CORPUS: list[tuple[int, list[Operation], bool]] = []


def corpus() -> list[tuple[int, list[Operation], bool]]:
    assert (JEPSEN / "README.md").exists(), f"the Jepsen etcd corpus is missing at {JEPSEN}"
    if not _CORPUS:
        _CORPUS.extend(load_jepsen_dir(JEPSEN))
    return _CORPUS


def op(
    client: int, kind: str, args: tuple[Any, ...], call: float, ret: float | None, output: Any = None, *,
    key: str = "k", outcome: Outcome = Outcome.OK,
) -> Operation:  # fmt: skip
    return Operation(0, client, key, kind, args, call, ret, outcome, output)


def history(*ops: Operation) -> list[Operation]:
    return [dataclasses.replace(o, id=i) for i, o in enumerate(ops)]


def test_the_corpus_has_102_histories_with_both_verdicts() -> None:
    histories = corpus()
    assert len(histories) == 102
    assert sum(expected for _, _, expected in histories) == 23


@pytest.mark.parametrize("number", range(103), ids=lambda n: f"etcd_{n:03d}")
def test_agrees_with_the_jepsen_etcd_verdict(number: int) -> None:
    found = [(ops, expected) for n, ops, expected in corpus() if n == number]
    if not found:
        assert number == 95  # the one empty log, without a verdict
        return
    ops, expected = found[0]
    result = check(ops, timeout=30)
    assert result.verdict is not Verdict.TIMEOUT, f"undecided in {result.seconds:.1f}s"
    assert result.ok is expected, result.explain()


GOOD = {
    "sequential write then read": history(op(1, "set", (1,), 0, 1), op(1, "get", (), 2, 3, 1)),
    "read of the initial empty value": history(op(1, "get", (), 0, 1, None), op(2, "set", (3,), 2, 3)),
    "concurrent write seen by an overlapping read": history(op(1, "set", (1,), 0, 10), op(2, "get", (), 1, 2, 1)),
    "concurrent write not yet seen by an overlapping read": history(
        op(1, "set", (1,), 0, 10), op(2, "get", (), 1, 2, None)
    ),
    "two concurrent writes, reads agree on the last": history(
        op(1, "set", (1,), 0, 5), op(2, "set", (2,), 1, 6), op(3, "get", (), 7, 8, 1), op(3, "get", (), 9, 10, 1)
    ),
    "incr counts up": history(
        op(1, "incr", (), 0, 1, 1), op(2, "incr", (), 2, 5, 3), op(3, "incr", (), 3, 4, 2), op(1, "get", (), 6, 7, 3)
    ),
    "cas succeeds and fails as the value says": history(
        op(1, "set", (1,), 0, 1),
        op(1, "cas", (1, 2), 2, 3, True),
        op(2, "cas", (1, 3), 4, 5, False),
        op(3, "get", (), 6, 7, 2),
    ),
    "unknown write that took effect": history(
        op(1, "set", (1,), 0, None, outcome=Outcome.UNKNOWN), op(2, "get", (), 5, 6, 1)
    ),
    "unknown write that never took effect": history(
        op(1, "set", (1,), 0, None, outcome=Outcome.UNKNOWN), op(2, "get", (), 5, 6, None)
    ),
    "unknown write that took effect late": history(
        op(1, "set", (1,), 0, None, outcome=Outcome.UNKNOWN), op(2, "get", (), 5, 6, None), op(2, "get", (), 7, 8, 1)
    ),
    "failed write is ignored": history(op(1, "set", (1,), 0, 1, outcome=Outcome.FAIL), op(2, "get", (), 2, 3, None)),
    "incr on a string is an error": history(
        op(1, "set", ("a",), 0, 1), op(1, "incr", (), 2, 3, INCR_ERROR), op(1, "get", (), 4, 5, "a")
    ),
}

BAD = {
    "stale read after a completed write": history(op(1, "set", (1,), 0, 1), op(2, "get", (), 2, 3, None)),
    "read of a value never written": history(op(1, "set", (1,), 0, 1), op(2, "get", (), 2, 3, 7)),
    "acknowledged write lost": history(
        op(1, "set", (1,), 0, 1), op(1, "set", (2,), 2, 3), op(2, "get", (), 4, 5, 2), op(2, "get", (), 6, 7, 1)
    ),
    "two incrs return the same value": history(op(1, "incr", (), 0, 2, 1), op(2, "incr", (), 1, 3, 1)),
    "cas succeeded on the wrong value": history(op(1, "set", (1,), 0, 1), op(2, "cas", (5, 6), 2, 3, True)),
    "cas failed although the value matched": history(op(1, "set", (1,), 0, 1), op(2, "cas", (1, 6), 2, 3, False)),
    "unknown write seen then unseen": history(
        op(1, "set", (1,), 0, None, outcome=Outcome.UNKNOWN), op(2, "get", (), 5, 6, 1), op(2, "get", (), 7, 8, None)
    ),
    "failed write observed": history(op(1, "set", (1,), 0, 1, outcome=Outcome.FAIL), op(2, "get", (), 2, 3, 1)),
    "reads go back in time": history(
        op(1, "set", (1,), 0, 10), op(2, "get", (), 1, 2, 1), op(3, "get", (), 3, 4, None)
    ),
}


@pytest.mark.parametrize("name", sorted(GOOD))
def test_accepts_a_known_good_history(name: str) -> None:
    result = check(GOOD[name])
    assert result.verdict is Verdict.OK, result.explain()


@pytest.mark.parametrize("name", sorted(BAD))
def test_rejects_a_known_bad_history(name: str) -> None:
    result = check(BAD[name])
    assert result.verdict is Verdict.ILLEGAL
    assert "not linearizable" in result.explain()


def test_keys_are_checked_apart_and_the_bad_one_is_named() -> None:
    ops = history(
        op(1, "set", (1,), 0, 10, key="a"), op(2, "get", (), 1, 2, 1, key="a"),
        op(1, "set", (1,), 11, 12, key="b"), op(2, "get", (), 13, 14, None, key="b"),
        op(3, "set", (5,), 0, 1, key="c"),
    )  # fmt: skip
    result = check(ops)
    assert result.verdict is Verdict.ILLEGAL
    assert result.failed_key == "b"
    assert result.keys == 3
    assert any(o.kind == "get" for o in result.stuck)
    # The same reads, each on its own key, are fine: a write on one key says nothing of another.
    assert check(history(op(1, "set", (1,), 0, 1, key="a"), op(2, "get", (), 2, 3, None, key="b"))).ok


def test_a_hard_history_times_out_instead_of_hanging() -> None:
    # Twenty unknown writes, then a read no order can explain: the search must try every subset.
    ops = [op(i, "set", (i,), i, None, outcome=Outcome.UNKNOWN) for i in range(22)]
    ops.append(op(99, "get", (), 100, 101, -1))
    result = check(history(*ops), timeout=0.2)
    assert result.verdict is Verdict.TIMEOUT
    assert result.seconds < 5


def test_history_records_invocations_and_outcomes() -> None:
    h = History()
    a = h.invoke(client=1, kind="set", key="x", args=(1,), at=0)
    b = h.invoke(client=2, kind="get", key="x", at=1)
    c = h.invoke(client=3, kind="incr", key="x", at=2)
    h.ok(a, None, at=3)
    h.ok(b, 1, at=4)
    h.unknown(c)
    ops = h.operations()
    assert [o.outcome for o in ops] == [Outcome.OK, Outcome.OK, Outcome.UNKNOWN]
    assert ops[2].ret is None
    assert check(ops).ok
    with pytest.raises(ValueError, match="already complete"):
        h.ok(a, None)
    with pytest.raises(ValueError, match="unknown operation kind"):
        h.invoke(client=1, kind="append", key="x")


def test_jepsen_parser_reads_outcomes_and_refuses_garbage() -> None:
    text = "\n".join(
        [
            "INFO  jepsen.util - 0\t:invoke\t:write\t3",
            "INFO  jepsen.util - 1\t:invoke\t:cas\t[3 4]",
            "INFO  jepsen.util - 2 :invoke :read nil",
            "INFO  jepsen.util - 0\t:ok\t:write\t3",
            "INFO  jepsen.util - 1\t:fail\t:cas\t[3 4]",
            "INFO  jepsen.util - 2\t:fail\t:read\t:timed-out",
            "INFO  jepsen.util - 3\t:invoke\t:write\t1",
            "INFO  jepsen.util - 3\t:info\t:write\t:timed-out",
        ]
    )
    ops = parse_jepsen_log(text)
    by_client = {o.client: o for o in ops}
    assert (by_client[0].kind, by_client[0].outcome) == ("set", Outcome.OK)
    assert (by_client[1].kind, by_client[1].output, by_client[1].outcome) == ("cas", False, Outcome.OK)
    assert by_client[2].outcome is Outcome.UNKNOWN
    assert (by_client[3].outcome, by_client[3].ret) == (Outcome.UNKNOWN, None)
    with pytest.raises(ValueError, match="not a Jepsen history line"):
        parse_jepsen_log("garbage")
    with pytest.raises(ValueError, match="without an invoke"):
        parse_jepsen_log("INFO  jepsen.util - 0\t:ok\t:write\t3")
