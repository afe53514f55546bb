"""The worker's task execution, in this process: outcomes, tracebacks, timeouts. (Claims, leases,
retries and shutdown run against real processes in tests/e2e/test_jobs_worker.py.)"""

import asyncio
import threading
import time
import uuid

from django.utils import timezone

from jobs.conf import WorkerSettings
from jobs.exceptions import JobTimeout, PermanentFailure
from jobs.queue import ClaimedJob
from jobs.registry import TaskRegistry, current_job, task
from jobs.worker import Worker, _Slot

TASKS = TaskRegistry()


@task(name="t.add", registry=TASKS)
def add(*, a: int, b: int) -> dict:
    job = current_job()
    return {"sum": a + b, "attempt": job.attempt, "worker": job.worker_id}


@task(name="t.broken", registry=TASKS)
def broken() -> None:
    {}["missing"]


@task(name="t.spin", registry=TASKS, timeout=0.3)
def spin() -> str:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            sum(range(100))
        except Exception:
            continue
    return "finished"


@task(name="t.hang", registry=TASKS, timeout=0.3)
async def hang() -> str:
    await asyncio.sleep(30)
    return "finished"


def make_worker() -> Worker:
    settings = WorkerSettings(
        worker_id="unit",
        queues=(),
        concurrency=1,
        prefetch=0,
        poll_interval=1.0,
        lease=30.0,
        shutdown_grace=1.0,
        metrics_host="127.0.0.1",
        metrics_port=0,
    )
    return Worker(settings, tasks=TASKS)


def claimed(name: str, payload: dict | None = None, attempts: int = 1) -> ClaimedJob:
    now = timezone.now()
    return ClaimedJob(uuid.uuid4(), name, "default", payload or {}, attempts, 3, now, now)


def run_in_slot(worker: Worker, job: ClaimedJob):
    """Run the job in a slot thread while this thread plays the main loop's timeout enforcer."""
    slot = _Slot(0)
    worker._slots = [slot]
    result = {}

    def target():
        slot.thread_id = threading.get_ident()
        result["outcome"] = worker._execute(slot, job)

    thread = threading.Thread(target=target)
    thread.start()
    while thread.is_alive():
        worker._enforce_timeouts()
        thread.join(0.01)
    return result["outcome"]


def test_a_task_gets_its_payload_and_its_job_context():
    outcome = run_in_slot(make_worker(), claimed("t.add", {"a": 2, "b": 3}, attempts=2))
    assert outcome.ok
    assert outcome.result == {"sum": 5, "attempt": 2, "worker": "unit"}
    assert current_job() is None, "the context does not leak out of the job"


def test_a_failure_carries_the_full_traceback():
    outcome = run_in_slot(make_worker(), claimed("t.broken"))
    assert not outcome.ok
    assert isinstance(outcome.error, KeyError)
    assert outcome.error_text.startswith("Traceback (most recent call last):")
    assert "in broken" in outcome.error_text
    assert outcome.error_text.rstrip().endswith("KeyError: 'missing'")


def test_a_python_task_past_its_timeout_is_interrupted_even_if_it_swallows_exceptions():
    started = time.monotonic()
    outcome = run_in_slot(make_worker(), claimed("t.spin"))
    assert time.monotonic() - started < 2
    assert isinstance(outcome.error, JobTimeout)
    assert "ran past its timeout of 0.3s" in outcome.error_text


def test_an_async_task_past_its_timeout_is_cancelled():
    started = time.monotonic()
    outcome = run_in_slot(make_worker(), claimed("t.hang"))
    assert time.monotonic() - started < 2
    assert isinstance(outcome.error, JobTimeout)


def test_an_unknown_task_fails_for_good():
    worker = make_worker()
    outcome = run_in_slot(worker, claimed("t.gone"))
    assert isinstance(outcome.error, PermanentFailure)
    assert not worker._decide(outcome).retry


def test_a_second_stop_signal_a_second_later_hurries_the_shutdown():
    worker = make_worker()
    worker.request_stop("SIGTERM")
    worker.request_stop("SIGTERM")  # the same keypress delivered twice
    assert worker.stopping
    assert not worker._hurry
    worker._stop_requested_at -= 1.5
    worker.request_stop("SIGTERM")
    assert worker._hurry
