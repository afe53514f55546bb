"""The value types of the keyspace: strings are bytes, hashes dicts, lists deques, sets sets, and
sorted sets the ZSet below. `type_name` is what TYPE answers."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterator
from typing import Any

from sortedcontainers import SortedList

Value = Any  # bytes | dict[bytes, bytes] | deque[bytes] | set[bytes] | ZSet


class ZSet:
    """Members with float scores, ordered by (score, member) as Redis orders them."""

    __slots__ = ("order", "scores")

    def __init__(self) -> None:
        self.scores: dict[bytes, float] = {}
        self.order: SortedList = SortedList()

    def __len__(self) -> int:
        return len(self.scores)

    def __iter__(self) -> Iterator[tuple[float, bytes]]:
        return iter(self.order)

    def add(self, member: bytes, score: float) -> bool:
        """Set `member`'s score; True when the member is new."""
        old = self.scores.get(member)
        if old is not None:
            if old == score:
                return False
            self.order.remove((old, member))
            self.scores[member] = score
            self.order.add((score, member))
            return False
        self.scores[member] = score
        self.order.add((score, member))
        return True

    def remove(self, member: bytes) -> bool:
        score = self.scores.pop(member, None)
        if score is None:
            return False
        self.order.remove((score, member))
        return True

    def rank(self, member: bytes) -> int | None:
        score = self.scores.get(member)
        return None if score is None else int(self.order.index((score, member)))

    def score_range(self, low: float, low_open: bool, high: float, high_open: bool) -> tuple[int, int]:
        """The [start, stop) indexes of the members whose score is within the bounds."""
        order = self.order
        if low_open:
            start = order.bisect_left((math.nextafter(low, math.inf), b"")) if low != math.inf else len(order)
        else:
            start = order.bisect_left((low, b""))
        if high == math.inf and not high_open:
            stop = len(order)
        else:
            stop = order.bisect_left((high if high_open else math.nextafter(high, math.inf), b""))
        return start, max(start, stop)

    def lex_range(self, low: bytes | None, low_open: bool, high: bytes | None, high_open: bool) -> tuple[int, int]:
        """[start, stop) for ZRANGEBYLEX; None bounds are - and +. Meaningful when all scores are
        equal (Redis's contract for lexicographic ranges), so the first score stands for all."""
        order = self.order
        if not order:
            return 0, 0
        score = order[0][0]
        if low is None:
            start = 0
        else:
            start = order.bisect_right((score, low)) if low_open else order.bisect_left((score, low))
        if high is None:
            stop = len(order)
        else:
            stop = order.bisect_left((score, high)) if high_open else order.bisect_right((score, high))
        return start, max(start, stop)


def type_name(value: Value) -> bytes:
    kind = type(value)
    if kind is bytes:
        return b"string"
    if kind is dict:
        return b"hash"
    if kind is deque:
        return b"list"
    if kind is set:
        return b"set"
    if kind is ZSet:
        return b"zset"
    raise TypeError(f"not a keyspace value: {kind.__name__}")


def deep_copy(value: Value) -> Value:
    """An independent copy (COPY): containers are copied, bytes are immutable."""
    kind = type(value)
    if kind is bytes:
        return value
    if kind is dict:
        return dict(value)
    if kind is deque:
        return deque(value)
    if kind is set:
        return set(value)
    copy = ZSet()
    copy.scores = dict(value.scores)
    copy.order = SortedList(value.order)
    return copy
