# ruff: noqa: S608 - the SQL is built from constants (table, columns, placeholders); values go as parameters
"""The queue's statements: insert, claim, complete, fail, renew and reap leases, release.

These are the hot paths, written in SQL per database because the ORM cannot say them: an INSERT of
thousands of rows from one JSON parameter, and claims that pick and take jobs in one statement.

- PostgreSQL claims with `SELECT ... FOR UPDATE SKIP LOCKED` inside the UPDATE that takes the rows,
  so concurrent workers never wait on each other's rows nor take the same one.
- SQLite claims with one `UPDATE ... RETURNING` in an IMMEDIATE transaction (the settings make every
  transaction IMMEDIATE): the write lock is held from BEGIN, so two claims cannot interleave.

Every write a worker makes about a job it holds is fenced by (status RUNNING, worker_id, attempts):
a worker whose lease expired and whose job was taken over cannot complete or fail it any more.
Timestamps come from the caller (this host's clock) so both databases compare like with like.

On PostgreSQL a worker's own bookkeeping (claims, outcomes, leases) commits without waiting for
the WAL flush (synchronous_commit = off, on the worker's connections only). A database crash can
then forget the last fraction of a second of it; what it forgets is a claim or an outcome, so the
job runs again (at least once, as after any worker crash), and is never lost. Enqueues, and the
writes of the tasks themselves, keep full durability.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import connection, transaction
from django.utils.dateparse import parse_datetime

from jobs.models import Job

TABLE = Job._meta.db_table
_RETURNING = "id, task, queue, payload, attempts, max_attempts, run_at"


@dataclass(frozen=True)
class ClaimedJob:
    """A job a worker holds: what it needs to run it and to fence its writes about it."""

    id: uuid.UUID
    task: str
    queue: str
    payload: dict[str, Any]
    attempts: int
    max_attempts: int
    run_at: datetime
    started_at: datetime


_prepared = threading.local()


def use_for_worker_bookkeeping() -> None:
    """Ready this thread's connection for the worker's own writes (see the module docstring).
    Call it outside transactions: a SET inside one is undone with it."""
    if not _is_postgres():
        return
    connection.ensure_connection()
    raw = connection.connection
    if getattr(_prepared, "connection", None) is not raw:
        with connection.cursor() as cursor:
            cursor.execute("SET synchronous_commit = off")
        _prepared.connection = raw


def _is_postgres() -> bool:
    return connection.vendor == "postgresql"


def _ts(value: datetime) -> Any:
    """A datetime as this database's driver wants it (SQLite stores naive UTC text)."""
    return connection.ops.adapt_datetimefield_value(value)


def _id(value: uuid.UUID) -> Any:
    return value if _is_postgres() else value.hex


def _to_uuid(raw: Any) -> uuid.UUID:
    return raw if isinstance(raw, uuid.UUID) else uuid.UUID(str(raw))


def _to_datetime(raw: Any) -> datetime:
    value = raw if isinstance(raw, datetime) else parse_datetime(str(raw))
    if value is None:
        raise ValueError(f"not a timestamp: {raw!r}")
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _to_json(raw: Any) -> Any:
    return json.loads(raw) if isinstance(raw, str | bytes) else raw


def _queue_filter(queues: Sequence[str]) -> tuple[str, list[Any]]:
    if not queues:
        return "", []
    return f" AND queue IN ({', '.join(['%s'] * len(queues))})", list(queues)


def _fence(jobs: Sequence[ClaimedJob]) -> tuple[str, list[Any]]:
    """SQL matching exactly these claims: each job id with the attempt number it was claimed at."""
    clause = " OR ".join(["(id = %s AND attempts = %s)"] * len(jobs))
    params: list[Any] = []
    for job in jobs:
        params += [_id(job.id), job.attempts]
    return f"({clause})", params


# -- enqueue -----------------------------------------------------------------------------------

_INSERT_COLUMNS = (
    "id, queue, task, payload, status, priority, attempts, max_attempts, run_at, worker_id, last_error, "
    "idempotency_key, owner_id, created_at"
)
_INSERT_POSTGRES = f"""
INSERT INTO {TABLE} ({_INSERT_COLUMNS})
SELECT r.id, r.queue, r.task, r.payload, 'PENDING', r.priority, 0, r.max_attempts, r.run_at, '', '',
       r.idempotency_key, r.owner_id, r.created_at
FROM jsonb_to_recordset(%s::jsonb) AS r(
    id uuid, queue varchar, task varchar, payload jsonb, priority smallint, max_attempts integer,
    run_at timestamptz, idempotency_key varchar, owner_id bigint, created_at timestamptz)
ON CONFLICT DO NOTHING
RETURNING id
"""
_INSERT_SQLITE = f"""
INSERT INTO {TABLE} ({_INSERT_COLUMNS})
SELECT json_extract(value, '$.id'), json_extract(value, '$.queue'), json_extract(value, '$.task'),
       json_extract(value, '$.payload'), 'PENDING', json_extract(value, '$.priority'), 0,
       json_extract(value, '$.max_attempts'), json_extract(value, '$.run_at'), '', '',
       json_extract(value, '$.idempotency_key'), json_extract(value, '$.owner_id'),
       json_extract(value, '$.created_at')
FROM json_each(%s) WHERE true
ON CONFLICT DO NOTHING
RETURNING id
"""
# Every column the INSERT leaves out must be nullable; tests/jobs/test_queue.py holds this list to the model.
INSERT_OMITS = frozenset({"lease_expires_at", "result", "started_at", "finished_at"})


def insert_jobs(jobs: Sequence[Job]) -> set[uuid.UUID]:
    """Write new PENDING jobs with one INSERT statement, skipping those whose idempotency key is
    taken. Returns the ids written. Runs in the caller's transaction when there is one."""
    postgres = _is_postgres()
    stamps: dict[datetime, Any] = {}  # most jobs of a batch share run_at and created_at

    def stamp(value: datetime) -> Any:
        if value not in stamps:
            stamps[value] = value.isoformat() if postgres else _ts(value)
        return stamps[value]

    rows = [
        {
            "id": str(job.id) if postgres else job.id.hex,
            "queue": job.queue,
            "task": job.task,
            "payload": job.payload,
            "priority": job.priority,
            "max_attempts": job.max_attempts,
            "run_at": stamp(job.run_at),
            "idempotency_key": job.idempotency_key,
            "owner_id": job.owner_id,
            "created_at": stamp(job.created_at),
        }
        for job in jobs
    ]
    with connection.cursor() as cursor:
        cursor.execute(_INSERT_POSTGRES if postgres else _INSERT_SQLITE, [json.dumps(rows, separators=(",", ":"))])
        written = {str(row[0]) for row in cursor.fetchall()}
    return {job.id for job in jobs if (str(job.id) if postgres else job.id.hex) in written}


# -- claim -------------------------------------------------------------------------------------

# The claim must walk jobs_pending_claim_idx in order and stop after `limit` rows. Before a table's
# first ANALYZE both planners guess that few rows are PENDING and would rather read them all and
# sort (10 ms a claim with 10,000 waiting instead of 0.2 ms): PostgreSQL is told not to sort,
# SQLite is told which index to use.
_CLAIM_POSTGRES = f"""
SET LOCAL enable_sort = off;
WITH picked AS (
    SELECT id FROM {TABLE}
    WHERE status = 'PENDING' AND run_at <= %s{{queues}}
    ORDER BY priority DESC, created_at
    LIMIT %s
    FOR UPDATE SKIP LOCKED
)
UPDATE {TABLE} AS j
SET status = 'RUNNING', attempts = j.attempts + 1, worker_id = %s, started_at = %s, lease_expires_at = %s
FROM picked WHERE j.id = picked.id
RETURNING j.id, j.task, j.queue, j.payload, j.attempts, j.max_attempts, j.run_at
"""
_CLAIM_SQLITE = f"""
UPDATE {TABLE}
SET status = 'RUNNING', attempts = attempts + 1, worker_id = %s, started_at = %s, lease_expires_at = %s
WHERE id IN (
    SELECT id FROM {TABLE} INDEXED BY jobs_pending_claim_idx
    WHERE status = 'PENDING' AND run_at <= %s{{queues}}
    ORDER BY priority DESC, created_at
    LIMIT %s
)
RETURNING {_RETURNING}
"""


def jobs_claim(
    *, worker_id: str, queues: Sequence[str], limit: int, lease_seconds: float, now: datetime
) -> list[ClaimedJob]:
    """Take up to `limit` due PENDING jobs (highest priority, then oldest) for this worker, atomically:
    they become RUNNING with attempts + 1 and a lease until now + lease_seconds."""
    queue_sql, queue_params = _queue_filter(queues)
    lease_until = _ts(now + timedelta(seconds=lease_seconds))
    postgres = _is_postgres()
    if postgres:
        sql = _CLAIM_POSTGRES.format(queues=queue_sql)
        params = [_ts(now), *queue_params, limit, worker_id, _ts(now), lease_until]
    else:
        sql = _CLAIM_SQLITE.format(queues=queue_sql)
        params = [worker_id, _ts(now), lease_until, _ts(now), *queue_params, limit]
    with transaction.atomic(savepoint=False), connection.cursor() as cursor:
        cursor.execute(sql, params)
        if postgres:
            cursor.nextset()  # past the SET
        rows = cursor.fetchall()
    return [
        ClaimedJob(
            id=_to_uuid(row[0]),
            task=row[1],
            queue=row[2],
            payload=_to_json(row[3]),
            attempts=row[4],
            max_attempts=row[5],
            run_at=_to_datetime(row[6]),
            started_at=now,
        )
        for row in rows
    ]


def _pending_rows() -> str:
    return TABLE if _is_postgres() else f"{TABLE} INDEXED BY jobs_pending_claim_idx"


def next_run_at(*, queues: Sequence[str]) -> datetime | None:
    """When the earliest PENDING job of these queues becomes due (maybe already), or None."""
    queue_sql, queue_params = _queue_filter(queues)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT MIN(run_at) FROM {_pending_rows()} WHERE status = 'PENDING'{queue_sql}", queue_params)
        row = cursor.fetchone()
    return _to_datetime(row[0]) if row and row[0] is not None else None


def due_job_exists(*, queues: Sequence[str], now: datetime) -> bool:
    """A read (no lock taken): is some PENDING job of these queues due?"""
    queue_sql, queue_params = _queue_filter(queues)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT 1 FROM {_pending_rows()} WHERE status = 'PENDING' AND run_at <= %s{queue_sql} LIMIT 1",
            [_ts(now), *queue_params],
        )
        return cursor.fetchone() is not None


# -- finish ------------------------------------------------------------------------------------


def _result_json(value: Any) -> str:
    try:
        return json.dumps(value, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError):
        return json.dumps({"repr": repr(value)[:4096]})


def jobs_complete(*, worker_id: str, finished: Sequence[tuple[ClaimedJob, Any]], now: datetime) -> set[uuid.UUID]:
    """Mark held jobs COMPLETED with their results; one UPDATE per distinct result. Returns the ids
    accepted (a job whose lease was lost to another worker is not)."""
    by_result: dict[str, list[ClaimedJob]] = defaultdict(list)
    for job, result in finished:
        by_result[_result_json(result)].append(job)
    cast = "CAST(%s AS jsonb)" if _is_postgres() else "%s"
    accepted: set[uuid.UUID] = set()
    with transaction.atomic(savepoint=False), connection.cursor() as cursor:
        for result_json, jobs in by_result.items():
            fence, fence_params = _fence(jobs)
            cursor.execute(
                f"UPDATE {TABLE} SET status = 'COMPLETED', result = {cast}, finished_at = %s, lease_expires_at = NULL "
                f"WHERE status = 'RUNNING' AND worker_id = %s AND {fence} RETURNING id",
                [result_json, _ts(now), worker_id, *fence_params],
            )
            accepted.update(_to_uuid(row[0]) for row in cursor.fetchall())
    return accepted


def job_fail(*, worker_id: str, job: ClaimedJob, error: str, retry_at: datetime | None, now: datetime) -> bool:
    """Record a failed attempt of a held job: back to PENDING due at `retry_at`, or DEAD when it is
    None. The error (a traceback) is kept either way. False when the lease was lost meanwhile."""
    changes: dict[str, Any] = {"last_error": error, "lease_expires_at": None}
    if retry_at is None:
        changes.update(status="DEAD", finished_at=now)
    else:
        changes.update(status="PENDING", run_at=retry_at)
    updated = Job.objects.filter(pk=job.id, attempts=job.attempts, worker_id=worker_id, status="RUNNING").update(
        **changes
    )
    return updated == 1


def leases_renew(*, worker_id: str, jobs: Sequence[ClaimedJob], lease_seconds: float, now: datetime) -> set[uuid.UUID]:
    """Push the leases of held jobs to now + lease_seconds. Returns the ids still held."""
    if not jobs:
        return set()
    fence, fence_params = _fence(jobs)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {TABLE} SET lease_expires_at = %s WHERE status = 'RUNNING' AND worker_id = %s AND {fence} "
            "RETURNING id",
            [_ts(now + timedelta(seconds=lease_seconds)), worker_id, *fence_params],
        )
        return {_to_uuid(row[0]) for row in cursor.fetchall()}


@dataclass(frozen=True)
class Reaped:
    requeued: list[tuple[uuid.UUID, str]]
    dead: list[tuple[uuid.UUID, str]]


def _expire_message(reason: str) -> str:
    # worker_id and attempts are columns: the message names the worker and the attempt that was lost.
    return f"'{reason}: worker ' || worker_id || ' held attempt ' || attempts || ' of ' || max_attempts"


def leases_reap(*, now: datetime) -> Reaped:
    """Jobs whose lease expired (their worker died or hung): the attempt counts; back to PENDING, due
    now, or DEAD when it was the last one."""
    expired = "status = 'RUNNING' AND lease_expires_at < %s"
    message = _expire_message("lease expired")
    with transaction.atomic(savepoint=False), connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {TABLE} SET status = 'DEAD', finished_at = %s, lease_expires_at = NULL, last_error = {message} "
            f"WHERE {expired} AND attempts >= max_attempts RETURNING id, task",
            [_ts(now), _ts(now)],
        )
        dead = [(_to_uuid(row[0]), row[1]) for row in cursor.fetchall()]
        cursor.execute(
            f"UPDATE {TABLE} SET status = 'PENDING', run_at = %s, lease_expires_at = NULL, last_error = {message} "
            f"WHERE {expired} RETURNING id, task",
            [_ts(now), _ts(now)],
        )
        requeued = [(_to_uuid(row[0]), row[1]) for row in cursor.fetchall()]
    return Reaped(requeued=requeued, dead=dead)


def jobs_release(*, worker_id: str, jobs: Sequence[ClaimedJob], now: datetime) -> int:
    """Give back held jobs that did not finish before shutdown. Their attempt counts (they ran), so
    one that used its last attempt is DEAD; the others are PENDING again, due now."""
    if not jobs:
        return 0
    fence, fence_params = _fence(jobs)
    message = _expire_message("released at shutdown")
    with transaction.atomic(savepoint=False), connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {TABLE} SET status = CASE WHEN attempts >= max_attempts THEN 'DEAD' ELSE 'PENDING' END, "
            f"finished_at = CASE WHEN attempts >= max_attempts THEN %s ELSE NULL END, "
            f"run_at = %s, lease_expires_at = NULL, last_error = {message} "
            f"WHERE status = 'RUNNING' AND worker_id = %s AND {fence}",
            [_ts(now), _ts(now), worker_id, *fence_params],
        )
        return int(cursor.rowcount)


def jobs_unclaim(*, worker_id: str, jobs: Sequence[ClaimedJob]) -> int:
    """Give back held jobs that never started (prefetched, then shutdown): PENDING again as they
    were, the claim's attempt undone."""
    if not jobs:
        return 0
    fence, fence_params = _fence(jobs)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {TABLE} SET status = 'PENDING', attempts = attempts - 1, lease_expires_at = NULL, "
            f"started_at = NULL WHERE status = 'RUNNING' AND worker_id = %s AND {fence}",
            [worker_id, *fence_params],
        )
        return int(cursor.rowcount)
