"""Tasks that the e2e tests run in real worker processes (imported through HELIOS_WORKER_IMPORTS).

Each run writes a row to e2e_side_effects, so that a test can count how often a job really ran,
which attempt it was and which worker ran it, independently of the jobs table.
"""

from __future__ import annotations

import asyncio
import os
import time

from django.db import connection

from jobs.registry import current_job, task

SIDE_EFFECTS = "e2e_side_effects"


def ensure_side_effect_table() -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            f"CREATE TABLE IF NOT EXISTS {SIDE_EFFECTS} "
            "(job_id varchar(64), attempt integer, worker varchar(128), at double precision, note varchar(32))"
        )


def _record(note: str) -> None:
    job = current_job()
    assert job is not None, "these tasks run in a worker"
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {SIDE_EFFECTS} (job_id, attempt, worker, at, note) VALUES (%s, %s, %s, %s, %s)",
            [job.id, job.attempt, job.worker_id, time.time(), note],
        )


@task(name="e2e.record")
def record(*, n: int = 0) -> int:
    _record("ran")
    return n


@task(name="e2e.slow")
def slow(*, seconds: float) -> str:
    _record("start")
    time.sleep(seconds)
    _record("done")
    return "done"


@task(name="e2e.flaky", retry_backoff=1.0, max_attempts=3)
def flaky(*, fail_times: int) -> str:
    _record("ran")
    job = current_job()
    assert job is not None
    if job.attempt <= fail_times:
        raise RuntimeError(f"failing on purpose on attempt {job.attempt}")
    return f"succeeded on attempt {job.attempt}"


@task(name="e2e.fails_until_file", retry_backoff=0.2, max_attempts=3)
def fails_until_file(*, path: str) -> str:
    _record("ran")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} is not there yet")
    return "found"


@task(name="e2e.busy_loop", timeout=1.0, max_attempts=2, retry_backoff=0.1)
def busy_loop(*, seconds: float) -> str:
    """Pure Python: a JobTimeout raised into the thread stops it."""
    _record("start")
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        sum(range(1000))
    return "finished"


@task(name="e2e.async_hang", timeout=1.0, max_attempts=1)
async def async_hang(*, seconds: float) -> str:
    await asyncio.sleep(seconds)
    return "finished"


@task(name="e2e.stuck_in_c", timeout=0.5, max_attempts=2)
def stuck_in_c(*, seconds: float) -> str:
    """time.sleep is one C call: a JobTimeout cannot land until it returns."""
    _record("start")
    time.sleep(seconds)
    return "finished"
