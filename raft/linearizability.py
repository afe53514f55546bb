"""A linearizability checker for key-value histories, in the style of Porcupine.

A history is a list of client operations, each with the time it was invoked and the time its
answer arrived: `ok` with an output, `fail` (it certainly did not take effect), or `unknown` (a
timeout, a lost connection: it may or may not have taken effect, at any time after its call).
The history is linearizable if every operation can be given one instant between its call and
its return such that the outputs are those of a sequential key-value store run in that order.

The search is Wing and Gong's, with Lowe's memoization as Porcupine does it: walk the calls in
time order, linearize one whenever the model accepts it, backtrack when a return is reached
whose call was not linearized yet, and never revisit a (set of linearized operations, state) pair.
Keys are independent (P-compositionality, Herlihy and Wing's locality), so each key's
sub-history is checked on its own, which keeps the searches small. An `unknown` operation returns
at infinity: it may be linearized anywhere after its call, including at the very end, which is
the same as never. A `fail`ed operation is left out, except a compare-and-set, whose failure is
an answer ("the value was not the expected one"), as in Jepsen's etcd histories.

Operations on a key (a register holding None, an int or a string):
    set(value) -> None      get() -> value or None      incr() -> the new integer
    cas(expected, new) -> True when the value was `expected` (and is now `new`), else False

    history = History()
    op = history.invoke(client=1, kind="set", key="x", args=(5,))
    history.ok(op, None)
    result = check(history.operations(), timeout=10.0)
    assert result.verdict is Verdict.OK, result.explain()
"""

from __future__ import annotations

import enum
import re
import threading
import time
from collections import defaultdict
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

KINDS = ("set", "get", "incr", "cas")
INFINITY = float("inf")


class Outcome(enum.Enum):
    """How a client learned the end of an operation."""

    OK = "ok"
    FAIL = "fail"  # certainly did not take effect (a cas that answered False is OK with output False)
    UNKNOWN = "unknown"  # may or may not have taken effect


class Verdict(enum.Enum):
    OK = "linearizable"
    ILLEGAL = "not linearizable"
    TIMEOUT = "undecided within the time bound"


class IncrError:
    """The output of an INCR on a value that is not an integer."""

    def __repr__(self) -> str:
        return "IncrError"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, IncrError)

    def __hash__(self) -> int:
        return hash("IncrError")


INCR_ERROR = IncrError()


@dataclass(frozen=True, slots=True)
class Operation:
    """One client operation. `ret` is None until it completes (and stays None when unknown)."""

    id: int
    client: Hashable
    key: Hashable
    kind: str
    args: tuple[Any, ...]
    call: float
    ret: float | None
    outcome: Outcome
    output: Any = None

    def describe(self) -> str:
        args = ", ".join(repr(a) for a in self.args)
        end = "?" if self.ret is None else f"{self.ret:g}"
        answer = {Outcome.OK: f"-> {self.output!r}", Outcome.FAIL: "failed", Outcome.UNKNOWN: "unknown"}[self.outcome]
        call = f"{self.kind}({self.key!r}{', ' if args else ''}{args})"
        return f"[{self.call:g}, {end}] client {self.client}: {call} {answer}"


class History:
    """Records operations as a test runs them: invoke() before sending, then ok/fail/unknown.

    Thread-safe; times come from time.monotonic_ns() unless given. An operation never completed
    counts as unknown.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ops: list[dict[str, Any]] = []

    def invoke(
        self, *, client: Hashable, kind: str, key: Hashable, args: tuple[Any, ...] = (), at: float | None = None
    ) -> int:
        if kind not in KINDS:
            raise ValueError(f"unknown operation kind {kind!r}; expected one of {KINDS}")
        now = time.monotonic_ns() if at is None else at
        with self._lock:
            self._ops.append(
                {
                    "client": client,
                    "kind": kind,
                    "key": key,
                    "args": tuple(args),
                    "call": now,
                    "ret": None,
                    "outcome": Outcome.UNKNOWN,
                    "output": None,
                }
            )
            return len(self._ops) - 1

    def _complete(self, op: int, outcome: Outcome, output: Any, at: float | None) -> None:
        now = time.monotonic_ns() if at is None else at
        with self._lock:
            record = self._ops[op]
            if record["ret"] is not None or record["outcome"] is not Outcome.UNKNOWN:
                raise ValueError(f"operation {op} is already complete")
            record["outcome"] = outcome
            record["output"] = output
            if outcome is not Outcome.UNKNOWN:
                record["ret"] = now

    def ok(self, op: int, output: Any = None, *, at: float | None = None) -> None:
        self._complete(op, Outcome.OK, output, at)

    def fail(self, op: int, *, at: float | None = None) -> None:
        self._complete(op, Outcome.FAIL, None, at)

    def unknown(self, op: int) -> None:
        self._complete(op, Outcome.UNKNOWN, None, None)

    def operations(self) -> list[Operation]:
        with self._lock:
            return [Operation(i, **record) for i, record in enumerate(self._ops)]

    def __len__(self) -> int:
        return len(self._ops)


# --- the model -------------------------------------------------------------------------------


def step(state: Any, op: Operation) -> tuple[bool, Any]:
    """Run `op` on a register holding `state`: (does the output match, the state after it)."""
    unknown = op.outcome is Outcome.UNKNOWN
    kind = op.kind
    if kind == "set":
        return True, op.args[0]
    if kind == "get":
        return unknown or op.output == state, state
    if kind == "incr":
        if state is not None and type(state) is not int:
            return unknown or op.output == INCR_ERROR, state
        new = (state or 0) + 1
        return unknown or op.output == new, new
    if kind == "cas":
        expected, new = op.args
        if state == expected:
            return unknown or op.output is True, new
        return unknown or op.output is False, state
    raise ValueError(f"unknown operation kind {kind!r}")


# --- the search ------------------------------------------------------------------------------


@dataclass
class CheckResult:
    """The verdict, and for a history that is not linearizable, the key and operations at fault."""

    verdict: Verdict
    operations: int = 0
    keys: int = 0
    failed_key: Hashable = None
    # For ILLEGAL: the longest sequence the search could linearize, then the operations left.
    longest_prefix: list[Operation] = field(default_factory=list)
    stuck: list[Operation] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.verdict is Verdict.OK

    def explain(self) -> str:
        if self.verdict is Verdict.OK:
            return f"linearizable: {self.operations} operations on {self.keys} keys ({self.seconds:.2f}s)"
        if self.verdict is Verdict.TIMEOUT:
            return f"undecided after {self.seconds:.1f}s ({self.operations} operations on {self.keys} keys)"
        lines = [f"not linearizable: key {self.failed_key!r}; it linearizes up to here:"]
        lines += ["  " + op.describe() for op in self.longest_prefix[-10:]]
        lines.append("and then none of these can come next:")
        lines += ["  " + op.describe() for op in self.stuck[:10]]
        return "\n".join(lines)


class _Deadline(Exception):
    pass


def _relevant(op: Operation) -> bool:
    # A failure certainly did nothing (a cas answering False is OK with output False), and a read
    # without an answer constrains nothing.
    return op.outcome is Outcome.OK or (op.outcome is Outcome.UNKNOWN and op.kind != "get")


class _Search:
    """Wing-Gong-Lowe search over one key's operations, on a doubly linked list of call/return events."""

    def __init__(self, ops: Sequence[Operation], initial: Any, deadline: float) -> None:
        self.ops = ops
        self.initial = initial
        self.deadline = deadline
        # Events: (time, is_return, op index). Calls sort before returns at equal times (concurrent).
        events: list[tuple[float, int, int]] = []
        for i, op in enumerate(ops):
            events.append((op.call, 0, i))
            events.append((op.ret if op.ret is not None and op.outcome is Outcome.OK else INFINITY, 1, i))
        events.sort()
        size = len(events) + 1  # node 0 is the head sentinel
        self.nxt = list(range(1, size + 1))
        self.nxt[size - 1] = -1
        self.prv = list(range(-1, size - 1))
        self.is_return = [0] * size
        self.op_of = [0] * size
        self.match = [0] * size  # a call node's return node
        self.bit = [0] * size
        # The model's answer for each call node, per state, computed once.
        self.transitions: list[dict[Any, tuple[bool, Any]] | None] = [None] * size
        call_node = [0] * len(ops)
        for pos, (_, ret, i) in enumerate(events, start=1):
            self.is_return[pos] = ret
            self.op_of[pos] = i
            if ret:
                self.match[call_node[i]] = pos
            else:
                call_node[i] = pos
                self.bit[pos] = 1 << i
                self.transitions[pos] = {}
        self.best: list[int] = []
        self.best_stuck: list[int] = []

    def remember(self, stack: list[tuple[int, Any]], node: int) -> None:
        """The deepest point so far: how far the search got, and the calls that could not follow."""
        self.best = [self.op_of[entry] for entry, _ in stack]
        self.best_stuck = []
        walk = self.nxt[0]
        while walk not in (-1, node):
            if not self.is_return[walk]:
                self.best_stuck.append(self.op_of[walk])
            walk = self.nxt[walk]
        self.best_stuck.append(self.op_of[node])

    def run(self) -> bool:
        nxt, prv, match = self.nxt, self.prv, self.match
        transitions, bit, ops, op_of = self.transitions, self.bit, self.ops, self.op_of
        cache: set[tuple[int, Any]] = set()
        stack: list[tuple[int, Any]] = []
        state = self.initial
        linearized = 0
        node = nxt[0]
        best_depth = -1
        counter = 0
        while nxt[0] != -1:
            counter += 1
            if not counter & 0xFFF and time.monotonic() > self.deadline:
                raise _Deadline
            table = transitions[node]
            if table is not None:  # a call: try to linearize it now
                outcome = table.get(state)
                if outcome is None:
                    outcome = table[state] = step(state, ops[op_of[node]])
                if outcome[0]:
                    new_linearized = linearized | bit[node]
                    key = (new_linearized, outcome[1])
                    if key not in cache:
                        cache.add(key)
                        stack.append((node, state))
                        state = outcome[1]
                        linearized = new_linearized
                        for n in (node, match[node]):  # lift the call and its return out of the list
                            nxt[prv[n]] = nxt[n]
                            if nxt[n] != -1:
                                prv[nxt[n]] = prv[n]
                        node = nxt[0]
                        continue
                node = nxt[node]
                continue
            # A return whose call is not linearized yet: undo the last choice.
            if len(stack) > best_depth:
                best_depth = len(stack)
                self.remember(stack, node)
            if not stack:
                return False
            top, state = stack.pop()
            linearized &= ~bit[top]
            for n in (match[top], top):  # put them back
                nxt[prv[n]] = n
                if nxt[n] != -1:
                    prv[nxt[n]] = n
            node = nxt[top]
        return True


def check(operations: Iterable[Operation], *, initial: Any = None, timeout: float | None = None) -> CheckResult:
    """Decide whether `operations` are linearizable, key by key. `timeout` bounds the whole search."""
    started = time.monotonic()
    deadline = started + timeout if timeout is not None else INFINITY
    by_key: dict[Hashable, list[Operation]] = defaultdict(list)
    count = 0
    for op in operations:
        count += 1
        if _relevant(op):
            by_key[op.key].append(op)
    result = CheckResult(Verdict.OK, operations=count, keys=len(by_key))
    # Small keys first: a violation in a small sub-history is found fast and reads easily.
    for key, ops in sorted(by_key.items(), key=lambda item: len(item[1])):
        search = _Search(ops, initial, deadline)
        try:
            linearizable = search.run()
        except _Deadline:
            result.verdict = Verdict.TIMEOUT
            break
        if not linearizable:
            result.verdict = Verdict.ILLEGAL
            result.failed_key = key
            result.longest_prefix = [ops[i] for i in search.best]
            result.stuck = [ops[i] for i in search.best_stuck]
            break
    result.seconds = time.monotonic() - started
    return result


# --- Jepsen's etcd histories -------------------------------------------------------------------

_JEPSEN_LINE = re.compile(r"jepsen\.util\s+-\s+(\d+)\s+:(\w+)\s+:(\w+)\s*(.*?)\s*$")


def _jepsen_value(text: str) -> Any:
    if text == "nil":
        return None
    return int(text)


def parse_jepsen_log(text: str, *, key: Hashable = "register") -> list[Operation]:
    """Operations from a Jepsen etcd log (`:invoke`, `:ok`, `:fail`, `:info` lines; time = line number).

    read/write/cas become get/set/cas on one key. `:info` and a read that `:fail`s with a timeout
    are unknown; a `:fail`ed cas answered False; an invoke never completed is unknown.
    """
    pending: dict[int, dict[str, Any]] = {}
    done: list[dict[str, Any]] = []
    for number, line in enumerate(text.splitlines()):
        match = _JEPSEN_LINE.search(line)
        if match is None:
            if line.strip():
                raise ValueError(f"line {number + 1}: not a Jepsen history line: {line!r}")
            continue
        process, event, function, value = int(match[1]), match[2], match[3], match[4]
        if event == "invoke":
            if process in pending:
                raise ValueError(f"line {number + 1}: process {process} invokes twice")
            args: tuple[Any, ...]
            if function == "read":
                kind, args = "get", ()
            elif function == "write":
                kind, args = "set", (_jepsen_value(value),)
            elif function == "cas":
                expected, new = value.strip("[]").split()
                kind, args = "cas", (_jepsen_value(expected), _jepsen_value(new))
            else:
                raise ValueError(f"line {number + 1}: unknown function {function!r}")
            pending[process] = {"client": process, "kind": kind, "key": key, "args": args, "call": float(number)}
            continue
        record = pending.pop(process, None)
        if record is None:
            raise ValueError(f"line {number + 1}: {event} for process {process} without an invoke")
        if event == "ok":
            output: Any = None
            if record["kind"] == "get":
                output = _jepsen_value(value)
            elif record["kind"] == "cas":
                output = True
            record.update(ret=float(number), outcome=Outcome.OK, output=output)
        elif event == "fail" and record["kind"] == "cas":
            record.update(ret=float(number), outcome=Outcome.OK, output=False)
        elif event == "fail" and value != ":timed-out":
            record.update(ret=float(number), outcome=Outcome.FAIL, output=None)
        elif event in ("fail", "info"):
            record.update(ret=None, outcome=Outcome.UNKNOWN, output=None)
        else:
            raise ValueError(f"line {number + 1}: unknown event {event!r}")
        done.append(record)
    for record in pending.values():
        record.update(ret=None, outcome=Outcome.UNKNOWN, output=None)
        done.append(record)
    done.sort(key=lambda r: r["call"])
    return [Operation(i, **record) for i, record in enumerate(done)]


def load_jepsen_dir(path: str | Path) -> list[tuple[int, list[Operation], bool]]:
    """(number, operations, expected linearizable) for each history with a verdict in verdicts.txt."""
    base = Path(path)
    verdicts: dict[int, bool] = {}
    for line in (base / "verdicts.txt").read_text().splitlines():
        if line.strip():
            number, verdict = line.split()
            verdicts[int(number)] = verdict == "true"
    return [
        (number, parse_jepsen_log((base / f"etcd_{number:03d}.log").read_text()), expected)
        for number, expected in sorted(verdicts.items())
    ]
