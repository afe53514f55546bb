"""A circuit breaker per backend: pure state, a clock passed in, no IO.

closed --(N consecutive failures, or an error rate over the window)--> open
open --(cooldown elapsed)--> half_open, which lets a few probe requests through
half_open --(every probe succeeded)--> closed;  half_open --(a probe failed)--> open
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

WINDOW_BUCKETS = 10


class CircuitState(enum.StrEnum):
    CLOSED = "closed"
    HALF_OPEN = "half_open"
    OPEN = "open"


# For the proxy_circuit_state gauge.
STATE_VALUES = {CircuitState.CLOSED: 0, CircuitState.HALF_OPEN: 1, CircuitState.OPEN: 2}


@dataclass(frozen=True)
class BreakerPolicy:
    """When a circuit opens and how it closes again."""

    consecutive_failures: int = 5
    error_rate: float = 0.5
    window: float = 10.0
    min_requests: int = 20
    cooldown: float = 10.0
    half_open_probes: int = 3


class _Window:
    """Successes and failures over the last `span` seconds, in WINDOW_BUCKETS buckets."""

    def __init__(self, span: float) -> None:
        self._width = span / WINDOW_BUCKETS
        self._starts = [float("-inf")] * WINDOW_BUCKETS
        self._ok = [0] * WINDOW_BUCKETS
        self._failed = [0] * WINDOW_BUCKETS

    def add(self, now: float, ok: bool) -> None:
        slot = int(now // self._width)
        index = slot % WINDOW_BUCKETS
        start = slot * self._width
        if self._starts[index] != start:
            self._starts[index] = start
            self._ok[index] = self._failed[index] = 0
        if ok:
            self._ok[index] += 1
        else:
            self._failed[index] += 1

    def counts(self, now: float) -> tuple[int, int]:
        oldest = now - self._width * WINDOW_BUCKETS
        ok = failed = 0
        for index, start in enumerate(self._starts):
            if start > oldest:
                ok += self._ok[index]
                failed += self._failed[index]
        return ok, failed

    def clear(self) -> None:
        self._starts = [float("-inf")] * WINDOW_BUCKETS


class CircuitBreaker:
    """Decides whether a backend may take a request, from the outcomes of the previous ones."""

    def __init__(
        self,
        policy: BreakerPolicy,
        clock: Callable[[], float],
        on_transition: Callable[[CircuitState, CircuitState], None] | None = None,
    ) -> None:
        self.policy = policy
        self._clock = clock
        self._on_transition = on_transition
        self._state = CircuitState.CLOSED
        self._consecutive_failures = 0
        self._window = _Window(policy.window)
        self._opened_at = 0.0
        self._probes_sent = 0
        self._probes_ok = 0
        self.opened_count = 0

    @property
    def state(self) -> CircuitState:
        if self._state is CircuitState.OPEN and self._clock() - self._opened_at >= self.policy.cooldown:
            self._move(CircuitState.HALF_OPEN)
        return self._state

    def available(self) -> bool:
        """May a request go to this backend now? (Does not reserve a half-open probe slot.)"""
        state = self.state
        if state is CircuitState.CLOSED:
            return True
        if state is CircuitState.HALF_OPEN:
            return self._probes_sent < self.policy.half_open_probes
        return False

    def on_dispatch(self) -> None:
        """A request was sent: in half-open it takes one of the probe slots."""
        if self.state is CircuitState.HALF_OPEN:
            self._probes_sent += 1

    def on_success(self) -> None:
        state = self.state
        if state is CircuitState.CLOSED:
            self._consecutive_failures = 0
            self._window.add(self._clock(), ok=True)
        elif state is CircuitState.HALF_OPEN:
            self._probes_ok += 1
            if self._probes_ok >= self.policy.half_open_probes:
                self._move(CircuitState.CLOSED)

    def on_failure(self) -> None:
        state = self.state
        if state is CircuitState.HALF_OPEN:
            self._open()
        elif state is CircuitState.CLOSED:
            now = self._clock()
            self._consecutive_failures += 1
            self._window.add(now, ok=False)
            if self._consecutive_failures >= self.policy.consecutive_failures or self._rate_exceeded(now):
                self._open()

    def on_abandon(self) -> None:
        """A dispatched request ended without an outcome (the client left): free its probe slot."""
        if self._state is CircuitState.HALF_OPEN and self._probes_sent > self._probes_ok:
            self._probes_sent -= 1

    def _rate_exceeded(self, now: float) -> bool:
        ok, failed = self._window.counts(now)
        total = ok + failed
        return total >= self.policy.min_requests and failed / total >= self.policy.error_rate

    def _open(self) -> None:
        self._opened_at = self._clock()
        self.opened_count += 1
        self._move(CircuitState.OPEN)

    def _move(self, new: CircuitState) -> None:
        old = self._state
        self._state = new
        self._probes_sent = self._probes_ok = 0
        if new is CircuitState.CLOSED:
            self._consecutive_failures = 0
            self._window.clear()
        if self._on_transition is not None and old is not new:
            self._on_transition(old, new)
