"""Retry policy: what to do with a job whose attempt failed, as a typed strategy returning a decision.

The default is exponential backoff with "equal jitter": the n-th retry waits half of
min(max_delay, base_delay * factor ** (n - 1)) plus a random share of the other half. Retries of
many jobs that failed together (a webhook target that was down) spread out instead of arriving as
one wave, and each wait is still at least as long as the whole previous one could have been.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from jobs.exceptions import JobTimeout, PermanentFailure


@dataclass(frozen=True)
class RetryDecision:
    """Retry after `delay` seconds, or give up (the job goes DEAD) with the reason why."""

    retry: bool
    delay: float = 0.0
    reason: str = ""


@dataclass(frozen=True)
class RetryStrategy:
    """Exponential backoff with jitter, bounded by the job's max_attempts.

    base_delay: the wait before the first retry (before jitter), in seconds.
    factor: how much each further wait grows.
    max_delay: the longest wait, in seconds.
    retry_on: the exception types worth retrying (by default every Exception, and timeouts);
        anything else, and PermanentFailure, is final.
    """

    base_delay: float = 1.0
    factor: float = 2.0
    max_delay: float = 600.0
    retry_on: tuple[type[BaseException], ...] = field(default=(Exception, JobTimeout))

    def __post_init__(self) -> None:
        if self.base_delay < 0 or self.max_delay < 0 or self.factor < 1:
            raise ValueError("RetryStrategy needs base_delay >= 0, max_delay >= 0 and factor >= 1")

    def backoff(self, attempts: int) -> float:
        """The wait after failed attempt number `attempts` (1-based), before jitter."""
        exponent = max(attempts - 1, 0)
        if self.base_delay == 0:
            return 0.0
        if exponent > 64:  # factor ** exponent would overflow; the wait is max_delay long before that
            return self.max_delay
        return float(min(self.max_delay, self.base_delay * self.factor**exponent))

    def decide(
        self, *, error: BaseException, attempts: int, max_attempts: int, rng: random.Random | None = None
    ) -> RetryDecision:
        """The decision after attempt number `attempts` (1-based) failed with `error`."""
        if isinstance(error, PermanentFailure):
            return RetryDecision(retry=False, reason="the task raised PermanentFailure")
        if not isinstance(error, self.retry_on):
            return RetryDecision(retry=False, reason=f"{type(error).__name__} is not retried by this task")
        if attempts >= max_attempts:
            return RetryDecision(retry=False, reason=f"attempt {attempts} of {max_attempts} failed")
        ceiling = self.backoff(attempts)
        half = ceiling / 2
        delay = half + (rng or random).uniform(0, half)
        return RetryDecision(retry=True, delay=delay, reason=f"attempt {attempts} of {max_attempts} failed")


NO_BACKOFF = RetryStrategy(base_delay=0.0)
DEFAULT_RETRY = RetryStrategy()


def as_strategy(retry_backoff: float | bool | RetryStrategy | None) -> RetryStrategy:
    """What @task(retry_backoff=...) accepts: a strategy, a base delay in seconds, or True/False/None.

    Like Celery: True means the default exponential backoff, False or 0 retries at once.
    """
    if retry_backoff is None or retry_backoff is True:
        return DEFAULT_RETRY
    if retry_backoff is False:
        return NO_BACKOFF
    if isinstance(retry_backoff, RetryStrategy):
        return retry_backoff
    if isinstance(retry_backoff, int | float) and retry_backoff >= 0:
        return RetryStrategy(base_delay=float(retry_backoff))
    raise ValueError(f"retry_backoff must be a RetryStrategy, seconds >= 0 or a bool, got {retry_backoff!r}")
