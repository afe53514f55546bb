"""Health state of backends and the retry budget: pure, synchronous, clocks passed in.

ActiveHealth follows the active checks (the checker in upstreams.py does the IO), OutlierDetector
watches real traffic (errors and latency) and ejects a backend for a while, RetryBudget keeps
retries to a fraction of the requests so that retries cannot multiply an overload.
"""

from __future__ import annotations

from dataclasses import dataclass

# Latency is smoothed with this weight for the newest sample.
LATENCY_EWMA_ALPHA = 0.3
# Latency ejection waits for this many samples after a (re)start.
LATENCY_MIN_SAMPLES = 5
BUDGET_BUCKETS = 10


@dataclass(frozen=True)
class HealthCheckPolicy:
    """Active checks: GET `path` every `interval`; `expected_status` is an inclusive range."""

    enabled: bool = True
    path: str = "/healthz"
    interval: float = 5.0
    timeout: float = 2.0
    expected_status: tuple[int, int] = (200, 399)
    healthy_threshold: int = 2
    unhealthy_threshold: int = 3

    def accepts(self, status: int) -> bool:
        low, high = self.expected_status
        return low <= status <= high


class ActiveHealth:
    """Up after `healthy_threshold` passing checks in a row, down after `unhealthy_threshold` failing
    ones. A backend starts up, so that a new backend serves at once; the first failures take it out."""

    def __init__(self, policy: HealthCheckPolicy) -> None:
        self.policy = policy
        self.healthy = True
        self._passes = 0
        self._failures = 0
        self.last_error = ""

    def record(self, ok: bool, error: str = "") -> bool:
        """Count one check; True when this check changed the verdict."""
        if ok:
            self._failures = 0
            self._passes += 1
            self.last_error = ""
            if not self.healthy and self._passes >= self.policy.healthy_threshold:
                self.healthy = True
                return True
        else:
            self._passes = 0
            self._failures += 1
            self.last_error = error
            if self.healthy and self._failures >= self.policy.unhealthy_threshold:
                self.healthy = False
                return True
        return False


@dataclass(frozen=True)
class OutlierPolicy:
    """Passive detection: eject after `consecutive_errors` gateway errors in a row, or when the
    smoothed latency exceeds `latency_threshold` (None: not watched). Ejections last
    `ejection_time` times the number of ejections so far, at most `max_ejection_time`."""

    enabled: bool = True
    consecutive_errors: int = 5
    latency_threshold: float | None = None
    ejection_time: float = 30.0
    max_ejection_time: float = 300.0
    max_ejected_percent: int = 50


class OutlierDetector:
    """Watches the outcomes of real requests to one backend and says when to eject it."""

    def __init__(self, policy: OutlierPolicy) -> None:
        self.policy = policy
        self._consecutive_errors = 0
        self._latency = 0.0
        self._samples = 0
        self.ejected_until = 0.0
        self.ejections = 0
        self.reason = ""

    def ejected(self, now: float) -> bool:
        return now < self.ejected_until

    def record(self, now: float, *, error: bool, latency: float) -> str:
        """Count one request; returns why the backend should be ejected now, or ""."""
        if not self.policy.enabled or now < self.ejected_until:
            return ""
        if error:
            self._consecutive_errors += 1
            if self._consecutive_errors >= self.policy.consecutive_errors:
                return f"{self._consecutive_errors} consecutive errors"
            return ""
        self._consecutive_errors = 0
        self._samples += 1
        self._latency = (
            latency if self._samples == 1 else self._latency + LATENCY_EWMA_ALPHA * (latency - self._latency)
        )
        threshold = self.policy.latency_threshold
        if threshold is not None and self._samples >= LATENCY_MIN_SAMPLES and self._latency > threshold:
            return f"latency {self._latency * 1000:.0f}ms over {threshold * 1000:.0f}ms"
        return ""

    def eject(self, now: float, reason: str) -> float:
        """Take the backend out for ejection_time x ejections so far (capped); returns the duration."""
        self.ejections += 1
        duration = min(self.policy.ejection_time * self.ejections, self.policy.max_ejection_time)
        self.ejected_until = now + duration
        self.reason = reason
        self._consecutive_errors = 0
        self._samples = 0
        self._latency = 0.0
        return duration

    @property
    def latency(self) -> float:
        return self._latency


class RetryBudget:
    """Retries allowed over the last `window` seconds: `ratio` of the requests plus
    `min_per_second` per second, so that a quiet service can still retry (Finagle's budget)."""

    def __init__(self, ratio: float = 0.2, min_per_second: float = 5.0, window: float = 10.0) -> None:
        self.ratio = ratio
        self.min_per_second = min_per_second
        self.window = window
        self._width = window / BUDGET_BUCKETS
        self._starts = [float("-inf")] * BUDGET_BUCKETS
        self._requests = [0] * BUDGET_BUCKETS
        self._retries = [0] * BUDGET_BUCKETS
        self.exhausted = 0

    def _slot(self, now: float) -> int:
        slot = int(now // self._width)
        index = slot % BUDGET_BUCKETS
        start = slot * self._width
        if self._starts[index] != start:
            self._starts[index] = start
            self._requests[index] = self._retries[index] = 0
        return index

    def record_request(self, now: float) -> None:
        self._requests[self._slot(now)] += 1

    def try_retry(self, now: float) -> bool:
        """Spend one retry if the budget allows it."""
        oldest = now - self.window
        requests = retries = 0
        for index, start in enumerate(self._starts):
            if start > oldest:
                requests += self._requests[index]
                retries += self._retries[index]
        if retries + 1 > self.min_per_second * self.window + self.ratio * requests:
            self.exhausted += 1
            return False
        self._retries[self._slot(now)] += 1
        return True
