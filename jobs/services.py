"""Writes of the jobs app on the enqueuing side: enqueue (one or thousands), cancel, retry.

Enqueueing uses the caller's database transaction when there is one: the job is written in it, is
invisible to workers until the caller commits, and disappears if the caller rolls back. However
many jobs are enqueued together, they are written by one INSERT statement (see queue.insert_jobs).
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, NamedTuple, cast

from django.utils import timezone

from jobs import conf, queue
from jobs.exceptions import InvalidJob, JobStateConflict, UnknownTask
from jobs.models import Job, JobStatus
from jobs.registry import registry

MAX_IDEMPOTENCY_KEY_LENGTH = 255
MIN_PRIORITY, MAX_PRIORITY = -32768, 32767
MAX_ATTEMPTS = 100


@dataclass(frozen=True)
class JobSpec:
    """One job to enqueue. Unset fields take the task's defaults, then the worker settings'."""

    task: str
    payload: Mapping[str, Any] = field(default_factory=dict)
    queue: str | None = None
    priority: int = 0
    run_at: datetime | None = None
    max_attempts: int | None = None
    idempotency_key: str | None = None
    owner: Any = None


class Enqueued(NamedTuple):
    job: Job
    created: bool  # False: an earlier job with the same idempotency key (and owner) was returned


def run_at_from(*, countdown: float | None = None, eta: datetime | None = None) -> datetime | None:
    """Celery's countdown (seconds from now) or eta (an aware datetime) as a run_at; None means now."""
    if countdown is not None and eta is not None:
        raise InvalidJob("run_at", "give countdown or eta, not both")
    if countdown is not None:
        if not isinstance(countdown, int | float) or isinstance(countdown, bool) or not math.isfinite(countdown):
            raise InvalidJob("countdown", f"expected a number of seconds, got {countdown!r}")
        return timezone.now() + timedelta(seconds=max(float(countdown), 0.0))
    return eta


def _build(spec: JobSpec, index: int | None, now: datetime, default_max_attempts: int) -> Job:
    where = "" if index is None else f"jobs[{index}]."

    def invalid(name: str, message: str) -> InvalidJob:
        return InvalidJob(f"{where}{name}", message)

    try:
        task = registry.get(spec.task)
    except UnknownTask:
        raise invalid("task", f"unknown task {spec.task!r}") from None
    if not isinstance(spec.payload, Mapping):
        raise invalid("payload", "must be a JSON object of the task's keyword arguments")
    payload = dict(spec.payload)
    try:
        json.dumps(payload, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise invalid("payload", f"is not JSON: {exc}") from None
    try:
        task.validate(payload)
    except InvalidJob as exc:
        raise invalid(exc.field, exc.message) from None
    queue_name = spec.queue or task.queue
    if not conf.QUEUE_NAME.match(queue_name):
        raise invalid("queue", f"{queue_name!r} is not a queue name (1-64 of [A-Za-z0-9_.:-])")
    if isinstance(spec.priority, bool) or not isinstance(spec.priority, int):
        raise invalid("priority", "must be an integer")
    if not MIN_PRIORITY <= spec.priority <= MAX_PRIORITY:
        raise invalid("priority", f"must be between {MIN_PRIORITY} and {MAX_PRIORITY}")
    max_attempts = spec.max_attempts or task.max_attempts or default_max_attempts
    if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or not 0 < max_attempts <= MAX_ATTEMPTS:
        raise invalid("max_attempts", f"must be an integer from 1 to {MAX_ATTEMPTS}")
    if spec.run_at is not None and timezone.is_naive(spec.run_at):
        raise invalid("run_at", "must carry a time zone")
    key = spec.idempotency_key
    if key is not None and (not isinstance(key, str) or not 1 <= len(key) <= MAX_IDEMPOTENCY_KEY_LENGTH):
        raise invalid("idempotency_key", f"must be a string of 1 to {MAX_IDEMPOTENCY_KEY_LENGTH} characters")
    fields = {
        **_NEW_JOB_DEFAULTS,
        "id": uuid.uuid4(),
        "queue": queue_name,
        "task": task.name,
        "payload": payload,
        "priority": spec.priority,
        "max_attempts": max_attempts,
        "run_at": max(spec.run_at, now) if spec.run_at is not None else now,
        "idempotency_key": key,
        "owner_id": _owner_id(spec.owner),
        "created_at": now,
    }
    # Positional construction is Django's fast path (the one it uses for rows read from the database).
    return cast(Any, Job)(*[fields[name] for name in _JOB_ATTNAMES])  # type: ignore[no-any-return]


_JOB_ATTNAMES = [field.attname for field in Job._meta.concrete_fields]
_NEW_JOB_DEFAULTS: dict[str, Any] = {
    "status": JobStatus.PENDING,
    "attempts": 0,
    "lease_expires_at": None,
    "worker_id": "",
    "last_error": "",
    "result": None,
    "started_at": None,
    "finished_at": None,
}


def _owner_id(owner: Any) -> int | None:
    if owner is None or not getattr(owner, "is_authenticated", True):
        return None
    return int(owner.pk)


def job_enqueue_many(*, specs: Sequence[JobSpec]) -> list[Enqueued]:
    """Validate every spec (nothing is written if one is invalid: InvalidJob), then write them all
    with one INSERT. Specs whose idempotency key is already taken return the existing job."""
    if not specs:
        return []
    now = timezone.now()
    default_max_attempts = conf.default_max_attempts()
    single = len(specs) == 1
    jobs = [_build(spec, None if single else i, now, default_max_attempts) for i, spec in enumerate(specs)]
    inserted = queue.insert_jobs(jobs)
    skipped = [job for job in jobs if job.id not in inserted]
    existing = _existing_for_keys(skipped) if skipped else {}
    results = []
    for job in jobs:
        if job.id in inserted:
            job._state.adding = False
            results.append(Enqueued(job, True))
        else:
            results.append(Enqueued(existing[(job.owner_id, job.idempotency_key)], False))
    return results


def _existing_for_keys(skipped: Sequence[Job]) -> dict[tuple[int | None, str | None], Job]:
    """The jobs that made the INSERT skip these: the earlier holders of their idempotency keys.

    Read after the INSERT, so a holder committed meanwhile by a concurrent enqueue is seen (on
    PostgreSQL the INSERT waited for that transaction to end).
    """
    found: dict[tuple[int | None, str | None], Job] = {}
    for owner_id in {job.owner_id for job in skipped}:
        keys = [job.idempotency_key for job in skipped if job.owner_id == owner_id]
        holders = Job.objects.filter(idempotency_key__in=keys)
        holders = holders.filter(owner__isnull=True) if owner_id is None else holders.filter(owner_id=owner_id)
        for holder in holders:
            found[(holder.owner_id, holder.idempotency_key)] = holder
    for job in skipped:
        if (job.owner_id, job.idempotency_key) not in found:
            # Only a key conflict can make the INSERT skip a row, so the holder vanished since.
            raise JobStateConflict("The job holding this idempotency key was deleted meanwhile; try again.", "")
    return found


def job_enqueue(
    *,
    task: str,
    payload: Mapping[str, Any] | None = None,
    queue: str | None = None,
    priority: int = 0,
    run_at: datetime | None = None,
    max_attempts: int | None = None,
    idempotency_key: str | None = None,
    owner: Any = None,
) -> Enqueued:
    """Enqueue one job (see job_enqueue_many). Raises InvalidJob, naming the field at fault."""
    spec = JobSpec(
        task=task,
        payload=payload if payload is not None else {},
        queue=queue,
        priority=priority,
        run_at=run_at,
        max_attempts=max_attempts,
        idempotency_key=idempotency_key,
        owner=owner,
    )
    return job_enqueue_many(specs=[spec])[0]


CANCELLABLE = (JobStatus.PENDING,)
RETRYABLE = (JobStatus.DEAD, JobStatus.CANCELLED)


def jobs_cancel(*, ids: Sequence[Any]) -> int:
    """Cancel the PENDING jobs among `ids`; returns how many were cancelled."""
    return Job.objects.filter(pk__in=ids, status__in=CANCELLABLE).update(
        status=JobStatus.CANCELLED, finished_at=timezone.now()
    )


def jobs_retry(*, ids: Sequence[Any]) -> int:
    """Put the DEAD and CANCELLED jobs among `ids` back to PENDING, due now, with their attempts reset.
    The last error stays, for the record, until an attempt replaces it."""
    return Job.objects.filter(pk__in=ids, status__in=RETRYABLE).update(
        status=JobStatus.PENDING,
        attempts=0,
        run_at=timezone.now(),
        lease_expires_at=None,
        started_at=None,
        finished_at=None,
        result=None,
    )


def job_cancel(*, job: Job) -> Job:
    """Cancel one PENDING job. Raises JobStateConflict for a job in any other state."""
    if not jobs_cancel(ids=[job.pk]):
        job.refresh_from_db()
        raise JobStateConflict(f"Job is {job.status}; only PENDING jobs can be cancelled.", job.status)
    job.refresh_from_db()
    return job


def job_retry(*, job: Job) -> Job:
    """Retry one DEAD or CANCELLED job from its first attempt. Raises JobStateConflict otherwise."""
    if not jobs_retry(ids=[job.pk]):
        job.refresh_from_db()
        raise JobStateConflict(f"Job is {job.status}; only DEAD or CANCELLED jobs can be retried.", job.status)
    job.refresh_from_db()
    return job
