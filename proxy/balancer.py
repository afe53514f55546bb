"""Load-balancing algorithms: pure, synchronous, no IO.

A balancer is built over the backends of one upstream and picks one of those that the caller
says are usable (healthy, not ejected, circuit not open, not already tried by this request).
Backends only need a stable `name`, a `weight` and a count of `active` requests.
"""

from __future__ import annotations

import bisect
import hashlib
import random
from collections.abc import Callable, Sequence
from typing import Generic, Protocol, TypeVar

ALGORITHMS = ("round_robin", "weighted_round_robin", "least_connections", "power_of_two", "consistent_hash")
# Points per unit of weight on the consistent-hash ring: enough that three backends get shares
# within a few percent of their weights.
RING_POINTS_PER_WEIGHT = 160


class Balanced(Protocol):
    """What a balancer needs to know of a backend."""

    @property
    def name(self) -> str: ...

    @property
    def weight(self) -> int: ...

    @property
    def active(self) -> int: ...


B = TypeVar("B", bound=Balanced)


class Balancer(Generic[B]):
    """Picks a backend for one request among the usable ones, or None when none is usable."""

    algorithm = ""

    def __init__(self, backends: Sequence[B]) -> None:
        self.backends = list(backends)

    def pick(self, usable: Callable[[B], bool], key: str | None = None) -> B | None:
        raise NotImplementedError


class RoundRobin(Balancer[B]):
    """Each usable backend in turn; an unusable one is skipped, not waited for."""

    algorithm = "round_robin"

    def __init__(self, backends: Sequence[B]) -> None:
        super().__init__(backends)
        self._next = 0

    def pick(self, usable: Callable[[B], bool], key: str | None = None) -> B | None:
        backends = self.backends
        count = len(backends)
        start = self._next
        for offset in range(count):
            index = (start + offset) % count
            backend = backends[index]
            if usable(backend):
                self._next = index + 1
                return backend
        return None


class WeightedRoundRobin(Balancer[B]):
    """Smooth weighted round robin (nginx's): weights 5,1,1 give a a b a c a a, never a burst of five."""

    algorithm = "weighted_round_robin"

    def __init__(self, backends: Sequence[B]) -> None:
        super().__init__(backends)
        self._current = [0] * len(self.backends)

    def pick(self, usable: Callable[[B], bool], key: str | None = None) -> B | None:
        current = self._current
        total = 0
        best = -1
        for index, backend in enumerate(self.backends):
            if not usable(backend):
                continue
            current[index] += backend.weight
            total += backend.weight
            if best < 0 or current[index] > current[best]:
                best = index
        if best < 0:
            return None
        current[best] -= total
        return self.backends[best]


def _load(backend: Balanced) -> float:
    return backend.active / backend.weight


class LeastConnections(Balancer[B]):
    """The backend with the fewest active requests per unit of weight; ties go round robin."""

    algorithm = "least_connections"

    def __init__(self, backends: Sequence[B]) -> None:
        super().__init__(backends)
        self._next = 0

    def pick(self, usable: Callable[[B], bool], key: str | None = None) -> B | None:
        backends = self.backends
        count = len(backends)
        start = self._next
        best: B | None = None
        best_index = 0
        best_load = 0.0
        for offset in range(count):
            index = (start + offset) % count
            backend = backends[index]
            if not usable(backend):
                continue
            load = _load(backend)
            if best is None or load < best_load:
                best, best_index, best_load = backend, index, load
        if best is not None:
            self._next = best_index + 1
        return best


class PowerOfTwoChoices(Balancer[B]):
    """Two usable backends drawn at random; the less loaded one wins (Mitzenmacher's two choices)."""

    algorithm = "power_of_two"

    def __init__(self, backends: Sequence[B], rng: random.Random | None = None) -> None:
        super().__init__(backends)
        self._rng = rng or random.Random()

    def pick(self, usable: Callable[[B], bool], key: str | None = None) -> B | None:
        candidates = [backend for backend in self.backends if usable(backend)]
        if len(candidates) < 2:
            return candidates[0] if candidates else None
        first, second = self._rng.sample(candidates, 2)
        return first if _load(first) <= _load(second) else second


def ring_hash(text: str) -> int:
    """A 64-bit hash that is the same in every process and every run (unlike hash())."""
    return int.from_bytes(hashlib.md5(text.encode(), usedforsecurity=False).digest()[:8], "big")


class ConsistentHash(Balancer[B]):
    """A hash ring with points per backend in proportion to its weight: a key keeps its backend,
    and losing one backend moves only the keys that were on it. Without a key it is round robin."""

    algorithm = "consistent_hash"

    def __init__(self, backends: Sequence[B]) -> None:
        super().__init__(backends)
        points: list[tuple[int, int]] = []
        for index, backend in enumerate(self.backends):
            for replica in range(RING_POINTS_PER_WEIGHT * backend.weight):
                points.append((ring_hash(f"{backend.name}#{replica}"), index))
        points.sort()
        self._hashes = [point for point, _ in points]
        self._owners = [owner for _, owner in points]
        self._fallback: RoundRobin[B] = RoundRobin(self.backends)

    def pick(self, usable: Callable[[B], bool], key: str | None = None) -> B | None:
        if key is None or not self._hashes:
            return self._fallback.pick(usable)
        position = bisect.bisect(self._hashes, ring_hash(key))
        count = len(self._hashes)
        seen: set[int] = set()
        for step in range(count):
            owner = self._owners[(position + step) % count]
            if owner in seen:
                continue
            backend = self.backends[owner]
            if usable(backend):
                return backend
            seen.add(owner)
            if len(seen) == len(self.backends):
                break
        return None


def make_balancer(algorithm: str, backends: Sequence[B]) -> Balancer[B]:
    """The balancer named `algorithm` (one of ALGORITHMS) over `backends`."""
    if algorithm == "round_robin":
        return RoundRobin(backends)
    if algorithm == "weighted_round_robin":
        return WeightedRoundRobin(backends)
    if algorithm == "least_connections":
        return LeastConnections(backends)
    if algorithm == "power_of_two":
        return PowerOfTwoChoices(backends)
    if algorithm == "consistent_hash":
        return ConsistentHash(backends)
    raise ValueError(f"unknown balancing algorithm {algorithm!r}; expected one of {', '.join(ALGORITHMS)}")
