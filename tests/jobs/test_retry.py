import random

import pytest

from jobs.exceptions import JobTimeout, PermanentFailure
from jobs.retry import DEFAULT_RETRY, NO_BACKOFF, RetryStrategy, as_strategy


def test_backoff_doubles_from_the_base_up_to_the_ceiling():
    strategy = RetryStrategy(base_delay=1.0, factor=2.0, max_delay=10.0)
    assert [strategy.backoff(n) for n in range(1, 7)] == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    assert strategy.backoff(10_000) == 10.0  # no overflow


@pytest.mark.parametrize("attempts", [1, 2, 3, 4])
def test_equal_jitter_keeps_each_wait_between_half_and_all_of_its_backoff(attempts):
    strategy = RetryStrategy(base_delay=2.0)
    rng = random.Random(attempts)
    delays = [
        strategy.decide(error=RuntimeError(), attempts=attempts, max_attempts=10, rng=rng).delay for _ in range(200)
    ]
    ceiling = 2.0 * 2 ** (attempts - 1)
    assert all(ceiling / 2 <= delay <= ceiling for delay in delays)
    assert max(delays) - min(delays) > ceiling / 4, "jitter spreads the retries"


def test_a_failure_is_retried_until_the_last_attempt():
    decide = DEFAULT_RETRY.decide
    assert decide(error=ValueError("x"), attempts=1, max_attempts=3).retry
    assert decide(error=ValueError("x"), attempts=2, max_attempts=3).retry
    final = decide(error=ValueError("x"), attempts=3, max_attempts=3)
    assert not final.retry
    assert final.reason == "attempt 3 of 3 failed"


def test_timeouts_are_retried_but_permanent_failures_and_unlisted_errors_are_not():
    assert DEFAULT_RETRY.decide(error=JobTimeout(), attempts=1, max_attempts=3).retry
    assert not DEFAULT_RETRY.decide(error=PermanentFailure("no"), attempts=1, max_attempts=3).retry
    only_io = RetryStrategy(retry_on=(OSError,))
    assert only_io.decide(error=ConnectionError(), attempts=1, max_attempts=3).retry
    refused = only_io.decide(error=KeyError("k"), attempts=1, max_attempts=3)
    assert not refused.retry
    assert "KeyError is not retried" in refused.reason


def test_retry_backoff_accepts_celery_style_values():
    assert as_strategy(None) is DEFAULT_RETRY
    assert as_strategy(True) is DEFAULT_RETRY
    assert as_strategy(False) is NO_BACKOFF
    assert as_strategy(5).base_delay == 5.0
    custom = RetryStrategy(base_delay=3, factor=3)
    assert as_strategy(custom) is custom
    assert NO_BACKOFF.decide(error=RuntimeError(), attempts=1, max_attempts=2).delay == 0.0
    with pytest.raises(ValueError, match="retry_backoff"):
        as_strategy(-1)
    with pytest.raises(ValueError, match="factor"):
        RetryStrategy(factor=0.5)
