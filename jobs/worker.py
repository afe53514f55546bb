"""The worker: claims jobs, runs their tasks on a pool of threads, records what happened.

One process, three kinds of threads:
- the main thread works in rounds: one transaction records every outcome reported since the last
  round (the successes in one statement per distinct result) and claims enough jobs (one
  statement) to fill the free slots plus `prefetch` waiting ones, which keep the slots busy while
  the next round is on its way; between rounds it sleeps until an outcome comes in, new work is
  signalled (wakeup.py), a scheduled job falls due, or the poll interval passes;
- `concurrency` slot threads each run one task at a time (an async task in an event loop of its
  own), under a per-task timeout;
- a heartbeat thread renews the leases of the jobs in hand every lease/3 and returns expired
  leases of any worker to the queue (or to DEAD when that was the last attempt).

SIGTERM or SIGINT: stop claiming, return prefetched jobs that did not start (their claim undone),
give running tasks worker.shutdown_grace to finish, release the rest (their attempt counts), exit
0. A second signal a second later skips the grace period.

Timeouts: an async task is cancelled at its deadline. A sync task gets a JobTimeout raised in its
thread (the only way to stop a Python thread); code stuck in C does not see it, so if the thread is
still busy STUCK_TASK_GRACE_SECONDS later the worker records the timeout, stops like on SIGTERM and
exits with EXIT_STUCK_TASK, for its supervisor to start a fresh process.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import signal
import threading
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from queue import Empty, SimpleQueue
from types import FrameType
from typing import Any
from uuid import UUID

from django.db import DatabaseError, connection, connections, transaction
from django.utils import timezone
from prometheus_client import start_http_server

from jobs import queue, wakeup
from jobs.conf import WorkerSettings
from jobs.exceptions import JobTimeout, PermanentFailure, UnknownTask
from jobs.metrics import WorkerMetrics
from jobs.queue import ClaimedJob
from jobs.registry import JobContext, Task, TaskRegistry, registry, set_current_job
from jobs.retry import RetryDecision

logger = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_STUCK_TASK = 3
STUCK_TASK_GRACE_SECONDS = 2.0
# Grace on top of an async task's timeout before the thread itself is interrupted.
ASYNC_TIMEOUT_MARGIN_SECONDS = 1.0
HURRY_AFTER_SECONDS = 1.0
DB_RETRY_FIRST_SECONDS = 0.2
DB_RETRY_MAX_SECONDS = 5.0
# When due jobs exist but the claim got none (another worker holds their row locks), look again soon.
BUSY_RECHECK_SECONDS = 0.05
MAX_ERROR_CHARS = 64 * 1024


class _Wakeup:
    """Like threading.Event for one waiter, but set() is safe in a signal handler.

    Event.set() takes the Event's lock; a signal landing while the main thread holds it (in
    clear() or wait()) would deadlock the handler against its own thread. SimpleQueue.put is
    reentrant, made to be called from signal handlers.
    """

    def __init__(self) -> None:
        self._calls: SimpleQueue[None] = SimpleQueue()

    def set(self) -> None:
        self._calls.put(None)

    def clear(self) -> None:
        while not self._calls.empty():
            self._calls.get_nowait()

    def wait(self, timeout: float) -> None:
        with contextlib.suppress(Empty):
            self._calls.get(timeout=max(timeout, 0.0))


class MetricsUnavailable(Exception):
    """The metrics address is taken or not ours: the worker does not start without its metrics."""


@dataclass
class Outcome:
    """How one attempt ended, as a slot thread reports it to the main thread."""

    job: ClaimedJob
    task: Task | None
    ok: bool
    result: Any = None
    error: BaseException | None = None
    error_text: str = ""
    duration: float = 0.0


@dataclass
class _Slot:
    """One slot thread, and the job it runs right now (guarded by `lock`)."""

    index: int
    lock: threading.Lock = field(default_factory=threading.Lock)
    job: ClaimedJob | None = None
    thread_id: int = 0
    deadline: float | None = None
    interrupted_at: float | None = None
    stuck: bool = False


def _raise_in_thread(thread_id: int, exc_type: type[BaseException]) -> bool:
    """Raise `exc_type` in another thread at its next bytecode (CPython's async exception)."""
    hit = ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), ctypes.py_object(exc_type))
    return bool(hit == 1)


def _absorb_late_interrupt() -> None:
    """A Python-level call: a JobTimeout raised just as the task returned surfaces here, inside the
    slot's try block, rather than later in code that does not expect it."""


async def _run_async(func: Callable[..., Awaitable[Any]], payload: dict[str, Any], timeout: float | None) -> Any:
    async with asyncio.timeout(timeout):
        return await func(**payload)


class Worker:
    """A worker process's engine; `run()` returns the exit code."""

    def __init__(
        self, settings: WorkerSettings, *, tasks: TaskRegistry = registry, metrics: WorkerMetrics | None = None
    ) -> None:
        self.settings = settings
        self.tasks = tasks
        self.metrics = metrics or WorkerMetrics()
        self._slots = [_Slot(index) for index in range(settings.concurrency)]
        self._work: SimpleQueue[ClaimedJob | None] = SimpleQueue()
        self._outcomes: SimpleQueue[Outcome] = SimpleQueue()
        self._unrecorded: list[Outcome] = []
        self._inflight: dict[UUID, ClaimedJob] = {}
        self._inflight_lock = threading.Lock()
        self._wake = _Wakeup()
        self._work_hint = threading.Event()
        self._stop_requested_at: float | None = None
        self._stop_reason = ""
        self._hurry = False
        self._exit_code = EXIT_OK
        self._heartbeat_stop = threading.Event()
        self._due_lock = threading.Lock()
        self._due_at: float | None = None  # monotonic: a job of ours falls due then (a retry, a countdown)
        self._db_retry_delay = DB_RETRY_FIRST_SECONDS

    # -- signals and wake-ups ----------------------------------------------------------------

    def request_stop(self, reason: str = "requested") -> None:
        """Stop claiming and shut down; a second request a second or more later skips the grace
        period. Safe in a signal handler: it only sets attributes and wakes the main loop, which
        does the logging."""
        now = time.monotonic()
        if self._stop_requested_at is None:
            self._stop_reason = reason
            self._stop_requested_at = now
        elif now - self._stop_requested_at >= HURRY_AFTER_SECONDS:
            self._hurry = True
        self._wake.set()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.request_stop(signal.Signals(signum).name)

    def _on_new_work(self) -> None:
        self._work_hint.set()
        self._wake.set()

    def _on_due(self, due: datetime) -> None:
        self._plan_wake(time.monotonic() + max((due - timezone.now()).total_seconds(), 0.0))

    def _plan_wake(self, at: float) -> None:
        with self._due_lock:
            self._due_at = at if self._due_at is None else min(self._due_at, at)
        self._wake.set()

    def _take_due(self) -> float:
        with self._due_lock:
            due, self._due_at = self._due_at, None
        return float("inf") if due is None else due

    @property
    def stopping(self) -> bool:
        return self._stop_requested_at is not None

    # -- the main loop -----------------------------------------------------------------------

    def run(self) -> int:
        """Serve until stopped. Raises MetricsUnavailable when the metrics address cannot be bound."""
        try:
            metrics_server, _ = start_http_server(
                self.settings.metrics_port, addr=self.settings.metrics_host, registry=self.metrics.registry
            )
        except OSError as exc:
            address = f"{self.settings.metrics_host}:{self.settings.metrics_port}"
            raise MetricsUnavailable(f"cannot serve metrics on {address}: {exc.strerror}") from None
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        threads = [
            threading.Thread(target=self._slot_loop, args=(slot,), name=f"jobs-slot-{slot.index}", daemon=True)
            for slot in self._slots
        ]
        heartbeat = threading.Thread(target=self._heartbeat_loop, name="jobs-heartbeat", daemon=True)
        waker = wakeup.waker_for(connection.vendor, self.settings.queues, self._on_new_work, self._on_due)
        for thread in [*threads, heartbeat]:
            thread.start()
        waker.start()
        logger.info(
            "worker %s started: queues %s, concurrency %d, database %s, metrics on %s:%d",
            self.settings.worker_id,
            ",".join(self.settings.queues) or "all",
            self.settings.concurrency,
            connection.vendor,
            self.settings.metrics_host,
            self.settings.metrics_port,
            extra={"action": "worker_started", "worker_id": self.settings.worker_id},
        )
        try:
            self._serve()
            logger.info("stopping (%s): no new jobs", self._stop_reason, extra={"action": "worker_stopping"})
            self._drain_and_release()
        finally:
            waker.stop()
            self._heartbeat_stop.set()
            for _ in threads:
                self._work.put(None)
            metrics_server.shutdown()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            connections.close_all()
        logger.info(
            "worker %s stopped (exit code %d)",
            self.settings.worker_id,
            self._exit_code,
            extra={"action": "worker_stopped", "worker_id": self.settings.worker_id},
        )
        return self._exit_code

    def _serve(self) -> None:
        capacity = self.settings.concurrency + self.settings.prefetch
        maybe_more = True  # claim at once on start
        next_poll = 0.0
        while not self.stopping:
            self._wake.clear()
            self._collect_outcomes()
            self._enforce_timeouts()
            next_poll = min(next_poll, self._take_due())
            now = time.monotonic()
            want = capacity - (self._held() - len(self._unrecorded))
            claim = want > 0 and (maybe_more or self._work_hint.is_set() or now >= next_poll)
            if claim:
                self._work_hint.clear()
            if claim or self._unrecorded:
                claimed = self._round(want if claim else 0)
                if claimed is None:  # the database did not answer: try again after a pause
                    next_poll, maybe_more = now + self._db_retry_delay, False
                elif claim:
                    next_poll = now + self.settings.poll_interval
                    maybe_more = len(claimed) == want
                    if not maybe_more:
                        next_poll = min(next_poll, self._next_due(now))
                if claimed:
                    continue
            self._wake.wait(max(0.0, self._wait_until(next_poll) - time.monotonic()))

    def _wait_until(self, next_poll: float) -> float:
        """The monotonic time to wake at anyway: the next poll, or a task's deadline if sooner."""
        wake_at = next_poll
        for slot in self._slots:
            deadline = slot.deadline
            if deadline is not None:
                wake_at = min(wake_at, deadline if slot.interrupted_at is None else deadline + STUCK_TASK_GRACE_SECONDS)
        if self._unrecorded:
            wake_at = min(wake_at, time.monotonic() + self._db_retry_delay)
        return wake_at

    def _held(self) -> int:
        with self._inflight_lock:
            return len(self._inflight)

    def _db_failed(self, what: str, exc: DatabaseError) -> None:
        logger.warning(
            "%s failed: %s; retrying in %.1fs",
            what,
            exc,
            self._db_retry_delay,
            extra={"action": "database_error", "retry_in_seconds": self._db_retry_delay},
        )
        with contextlib.suppress(DatabaseError):
            connection.close()
        self._db_retry_delay = min(self._db_retry_delay * 2, DB_RETRY_MAX_SECONDS)

    def _round(self, limit: int) -> list[ClaimedJob] | None:
        """One transaction: record the outcomes in hand, claim up to `limit` jobs. None when the
        database failed (nothing changed; the outcomes stay in hand for the next round)."""
        now = timezone.now()
        try:
            queue.use_for_worker_bookkeeping()
            with transaction.atomic():
                recorded = self._record(self._unrecorded, now)
                claimed = (
                    queue.jobs_claim(
                        worker_id=self.settings.worker_id,
                        queues=self.settings.queues,
                        limit=limit,
                        lease_seconds=self.settings.lease,
                        now=now,
                    )
                    if limit
                    else []
                )
        except DatabaseError as exc:
            self._db_failed("a round of claims and outcomes", exc)
            return None
        self._db_retry_delay = DB_RETRY_FIRST_SECONDS
        self._unrecorded = []
        for outcome, label, decision in recorded:
            self._report(outcome, label, decision)
        with self._inflight_lock:
            for job in claimed:
                self._inflight[job.id] = job
        for job in claimed:
            self.metrics.pickup_latency.observe(max((job.started_at - job.run_at).total_seconds(), 0.0))
            self._work.put(job)
        return claimed

    def _next_due(self, now: float) -> float:
        """The monotonic time the next scheduled job of our queues falls due (or +inf)."""
        try:
            due = queue.next_run_at(queues=self.settings.queues)
        except DatabaseError as exc:
            self._db_failed("next_run_at", exc)
            return now + self._db_retry_delay
        if due is None:
            return float("inf")
        wait = (due - timezone.now()).total_seconds()
        return now + max(wait, BUSY_RECHECK_SECONDS)

    # -- running tasks (slot threads) --------------------------------------------------------

    def _slot_loop(self, slot: _Slot) -> None:
        slot.thread_id = threading.get_ident()
        while True:
            job = self._work.get()
            if job is None:
                return
            try:
                outcome = self._execute(slot, job)
            except BaseException as exc:  # a bug of the worker's own: still report the job, or it is held forever
                logger.exception("slot %d failed running job %s", slot.index, job.id, extra={"action": "slot_error"})
                outcome = self._failure(job, None, exc)
            with slot.lock:
                # An interrupt landing just as the task returned can skip the clean-up in _call.
                slot.job = slot.deadline = slot.interrupted_at = None
            self._reset_task_connections()
            self._outcomes.put(outcome)
            self._wake.set()

    def _execute(self, slot: _Slot, job: ClaimedJob) -> Outcome:
        try:
            task = self.tasks.get(job.task)
        except UnknownTask as exc:
            return Outcome(job, None, ok=False, error=PermanentFailure(str(exc)), error_text=f"UnknownTask: {exc}\n")
        set_current_job(
            JobContext(
                id=str(job.id),
                task=job.task,
                queue=job.queue,
                attempt=job.attempts,
                max_attempts=job.max_attempts,
                worker_id=self.settings.worker_id,
            )
        )
        started = time.perf_counter()
        try:
            outcome = self._call(slot, job, task)
        except JobTimeout:  # raised into this thread just as the task returned
            outcome = None
        finally:
            set_current_job(None)
        if outcome is None:
            error = JobTimeout(f"task {task.name} ran past its timeout of {task.timeout or 0:g}s")
            outcome = Outcome(job, task, ok=False, error=error, error_text=f"JobTimeout: {error}\n")
        outcome.duration = time.perf_counter() - started
        return outcome

    def _call(self, slot: _Slot, job: ClaimedJob, task: Task) -> Outcome | None:
        """Run the task under its timeout: its Outcome, or None when it timed out."""
        timed_out = False
        outcome: Outcome | None = None
        try:
            with slot.lock:
                slot.job = job
                if task.timeout is not None:
                    margin = ASYNC_TIMEOUT_MARGIN_SECONDS if task.is_async else 0.0
                    slot.deadline = time.monotonic() + task.timeout + margin
            if slot.deadline is not None:
                self._wake.set()  # the main loop may be asleep until its next poll: it must wake at the deadline
            if task.is_async:
                loop_started = time.monotonic()
                try:
                    result = asyncio.run(_run_async(task.func, job.payload, task.timeout))
                except TimeoutError:
                    # asyncio.timeout's own expiry, or a TimeoutError of the task's making
                    elapsed = time.monotonic() - loop_started
                    if task.timeout is None or elapsed < task.timeout:
                        raise
                    timed_out = True
                    result = None
            else:
                result = task.func(**job.payload)
            outcome = Outcome(job, task, ok=True, result=result)
        except JobTimeout:
            timed_out = True
        except BaseException as exc:  # a task's failure, whatever it is, is the job's
            outcome = self._failure(job, task, exc)
        finally:
            with slot.lock:
                slot.job = None
                slot.deadline = None
                timed_out = timed_out or slot.interrupted_at is not None
                slot.interrupted_at = None
            _absorb_late_interrupt()
        return None if timed_out else outcome

    @staticmethod
    def _failure(job: ClaimedJob, task: Task | None, exc: BaseException) -> Outcome:
        text = "".join(traceback.format_exception(exc))
        return Outcome(job, task, ok=False, error=exc, error_text=text[-MAX_ERROR_CHARS:])

    @staticmethod
    def _reset_task_connections() -> None:
        """Tasks use the ORM from slot threads; a connection they broke is not handed to the next one."""
        for conn in connections.all(initialized_only=True):
            if conn.in_atomic_block or (conn.errors_occurred and not conn.is_usable()):
                conn.close()

    def _enforce_timeouts(self) -> None:
        now = time.monotonic()
        for slot in self._slots:
            with slot.lock:
                if slot.job is None or slot.deadline is None or now < slot.deadline:
                    continue
                if slot.interrupted_at is None:
                    slot.interrupted_at = now
                    _raise_in_thread(slot.thread_id, JobTimeout)
                    logger.warning(
                        "job %s (%s) ran past its timeout: interrupting it",
                        slot.job.id,
                        slot.job.task,
                        extra={"action": "job_timeout", "job_id": str(slot.job.id)},
                    )
                elif not slot.stuck and now >= slot.deadline + STUCK_TASK_GRACE_SECONDS:
                    slot.stuck = True
                    logger.error(
                        "job %s (%s) does not stop after its timeout (blocked outside Python): "
                        "recording the timeout and restarting this worker",
                        slot.job.id,
                        slot.job.task,
                        extra={"action": "job_stuck", "job_id": str(slot.job.id)},
                    )
                    self._exit_code = EXIT_STUCK_TASK
                    self.request_stop("a task is stuck")

    # -- recording outcomes (main thread) ----------------------------------------------------

    def _collect_outcomes(self) -> None:
        """Move outcomes reported by the slots into `_unrecorded`, for the next round."""
        while not self._outcomes.empty():
            outcome = self._outcomes.get()
            with self._inflight_lock:
                current = self._inflight.get(outcome.job.id)
            if current is not None and current.attempts == outcome.job.attempts:
                self._unrecorded.append(outcome)

    def _record(self, outcomes: list[Outcome], now: datetime) -> list[tuple[Outcome, str, RetryDecision | None]]:
        """Write outcomes (inside the round's transaction); returns what to report once it commits."""
        recorded: list[tuple[Outcome, str, RetryDecision | None]] = []
        successes = [outcome for outcome in outcomes if outcome.ok]
        if successes:
            accepted = queue.jobs_complete(
                worker_id=self.settings.worker_id,
                finished=[(outcome.job, outcome.result) for outcome in successes],
                now=now,
            )
            recorded += [(o, "completed" if o.job.id in accepted else "lost", None) for o in successes]
        for outcome in outcomes:
            if not outcome.ok:
                decision = self._decide(outcome)
                retry_at = now + timedelta(seconds=decision.delay) if decision.retry else None
                held = queue.job_fail(
                    worker_id=self.settings.worker_id,
                    job=outcome.job,
                    error=outcome.error_text,
                    retry_at=retry_at,
                    now=now,
                )
                label = "lost" if not held else "retried" if decision.retry else "dead"
                recorded.append((outcome, label, decision))
        return recorded

    def _decide(self, outcome: Outcome) -> RetryDecision:
        assert outcome.error is not None
        if outcome.task is None:
            return RetryDecision(retry=False, reason="unknown task")
        return outcome.task.retry.decide(
            error=outcome.error, attempts=outcome.job.attempts, max_attempts=outcome.job.max_attempts
        )

    def _report(self, outcome: Outcome, label: str, decision: RetryDecision | None) -> None:
        """After the round committed: forget the job, count it, log what needs telling."""
        job = outcome.job
        with self._inflight_lock:
            self._inflight.pop(job.id, None)
        self.metrics.processed.labels(job.task, label).inc()
        self.metrics.duration.labels(job.task).observe(outcome.duration)
        extra = {"job_id": str(job.id), "task": job.task, "attempt": job.attempts, "max_attempts": job.max_attempts}
        lines = outcome.error_text.strip().splitlines()
        error = lines[-1] if lines else ""
        if label == "lost":
            logger.warning(
                "job %s (%s) finished after its lease was lost: outcome dropped",
                job.id,
                job.task,
                extra={"action": "job_lost", **extra},
            )
        elif label == "retried" and decision is not None:
            self._plan_wake(time.monotonic() + decision.delay)
            logger.warning(
                "job %s (%s) failed on attempt %d of %d: %s; retrying in %.2fs",
                job.id,
                job.task,
                job.attempts,
                job.max_attempts,
                error,
                decision.delay,
                extra={"action": "job_retry", "retry_in_seconds": round(decision.delay, 3), **extra},
            )
        elif label == "dead" and decision is not None:
            logger.error(
                "job %s (%s) is DEAD: %s (%s)",
                job.id,
                job.task,
                error,
                decision.reason,
                extra={"action": "job_dead", **extra},
            )

    # -- leases (heartbeat thread) -----------------------------------------------------------

    def _heartbeat_loop(self) -> None:
        interval = self.settings.heartbeat_interval
        while not self._heartbeat_stop.wait(interval):
            try:
                self._heartbeat()
            except DatabaseError as exc:
                logger.warning("heartbeat failed: %s", exc, extra={"action": "heartbeat_failed"})
                with contextlib.suppress(DatabaseError):
                    connection.close()
        with contextlib.suppress(DatabaseError):
            connection.close()

    def _heartbeat(self) -> None:
        queue.use_for_worker_bookkeeping()
        with self._inflight_lock:
            held = list(self._inflight.values())
        now = timezone.now()
        renewed = queue.leases_renew(
            worker_id=self.settings.worker_id, jobs=held, lease_seconds=self.settings.lease, now=now
        )
        for job in held:
            if job.id not in renewed:
                with self._inflight_lock:
                    still_held = job.id in self._inflight
                if still_held:
                    logger.warning(
                        "lease of job %s (%s) lost: another worker may run it",
                        job.id,
                        job.task,
                        extra={"action": "lease_lost", "job_id": str(job.id)},
                    )
        reaped = queue.leases_reap(now=now)
        for job_id, task_name in reaped.requeued:
            logger.warning(
                "job %s (%s): lease expired, back in the queue",
                job_id,
                task_name,
                extra={"action": "lease_expired", "job_id": str(job_id)},
            )
        for job_id, task_name in reaped.dead:
            logger.error(
                "job %s (%s): lease expired on its last attempt, DEAD",
                job_id,
                task_name,
                extra={"action": "job_dead", "job_id": str(job_id)},
            )

    # -- shutdown ------------------------------------------------------------------------------

    def _drain_and_release(self) -> None:
        unstarted: list[ClaimedJob] = []
        while not self._work.empty():
            job = self._work.get()
            if job is not None:
                unstarted.append(job)
        deadline = time.monotonic() + self.settings.shutdown_grace
        while self._busy_slots() and not self._hurry and time.monotonic() < deadline:
            self._wake.clear()
            self._collect_outcomes()
            self._enforce_timeouts()
            if self._unrecorded:
                self._round(0)
            self._wake.wait(max(0.0, min(deadline, self._wait_until(deadline)) - time.monotonic()))
        if self._hurry:
            logger.info("stopping now: unfinished jobs are released", extra={"action": "worker_hurry"})
        self._collect_outcomes()
        if self._unrecorded:
            self._round(0)
        unstarted_ids = {job.id for job in unstarted}
        stuck = {slot.job.id for slot in self._slots if slot.stuck and slot.job is not None}
        with self._inflight_lock:
            running = [job for job in self._inflight.values() if job.id not in unstarted_ids]
        now = timezone.now()
        try:
            queue.use_for_worker_bookkeeping()
            with transaction.atomic():
                returned = queue.jobs_unclaim(worker_id=self.settings.worker_id, jobs=unstarted)
                self._unrecorded = [self._stuck_outcome(job) for job in running if job.id in stuck]
                recorded = self._record(self._unrecorded, now)
                released = queue.jobs_release(
                    worker_id=self.settings.worker_id, jobs=[job for job in running if job.id not in stuck], now=now
                )
        except DatabaseError as exc:
            logger.error(
                "could not give back %d jobs (%s): their leases will expire and return them",
                len(unstarted) + len(running),
                exc,
                extra={"action": "release_failed"},
            )
            return
        for outcome, label, decision in recorded:
            self._report(outcome, label, decision)
        if returned or released:
            logger.warning(
                "gave back %d jobs that had not started and released %d unfinished ones (their attempt counts)",
                returned,
                released,
                extra={"action": "jobs_released", "returned": returned, "released": released},
            )

    def _busy_slots(self) -> list[_Slot]:
        return [slot for slot in self._slots if slot.job is not None and not slot.stuck]

    def _stuck_outcome(self, job: ClaimedJob) -> Outcome:
        try:
            task: Task | None = self.tasks.get(job.task)
        except UnknownTask:
            task = None
        timeout = task.timeout if task is not None and task.timeout is not None else 0.0
        error = JobTimeout(f"task {job.task} ran past its timeout of {timeout:g}s and could not be interrupted")
        return Outcome(job, task, ok=False, error=error, error_text=f"JobTimeout: {error}\n")


def run(settings: WorkerSettings) -> int:
    """Run a worker with `settings` until it is stopped; returns the process's exit code."""
    return Worker(settings).run()
