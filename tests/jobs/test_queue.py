"""The queue's statements on this test's database (SQLite, or PostgreSQL in the PostgreSQL pass)."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from jobs import queue
from jobs.models import Job, JobStatus
from jobs.tasks import echo

pytestmark = pytest.mark.django_db


def claim(worker="w1", limit=10, queues=(), lease=30.0, now=None):
    now = now or timezone.now()
    return queue.jobs_claim(worker_id=worker, queues=list(queues), limit=limit, lease_seconds=lease, now=now)


def test_the_insert_leaves_out_only_nullable_columns():
    written = {"id", "queue", "task", "payload", "status", "priority", "attempts", "max_attempts", "run_at"}
    written |= {"worker_id", "last_error", "idempotency_key", "owner", "created_at"}
    fields = {field.name: field for field in Job._meta.concrete_fields}
    assert set(fields) == written | queue.INSERT_OMITS
    assert all(fields[name].null for name in queue.INSERT_OMITS)


def test_a_claim_takes_due_jobs_by_priority_then_age_in_one_statement():
    old = echo.delay(n="old")
    new = echo.delay(n="new")
    urgent = echo.apply_async(kwargs={"n": "urgent"}, priority=9)
    echo.apply_async(kwargs={"n": "later"}, countdown=60)
    now = timezone.now()
    with CaptureQueriesContext(connection) as queries:
        claimed = claim(limit=2, now=now)
    assert len([q for q in queries if "UPDATE" in q["sql"]]) == 1
    assert [job.id for job in claimed] in ([urgent.pk, old.pk], [old.pk, urgent.pk])
    assert {job.payload["n"] for job in claimed} == {"urgent", "old"}
    rows = {job.pk: job for job in Job.objects.filter(pk__in=[urgent.pk, old.pk])}
    for job in rows.values():
        assert (job.status, job.attempts, job.worker_id) == (JobStatus.RUNNING, 1, "w1")
        assert job.lease_expires_at == now + timedelta(seconds=30)
    assert [job.id for job in claim()] == [new.pk]
    assert claim() == [], "the scheduled job is not due"


def test_a_claim_serves_only_the_worker_s_queues():
    echo.apply_async(queue="mail")
    report = echo.apply_async(queue="reports")
    assert [job.id for job in claim(queues=["reports", "other"])] == [report.pk]


def test_completion_is_fenced_by_worker_and_attempt():
    echo.delay()
    (held,) = claim(worker="w1")
    assert queue.jobs_complete(worker_id="w2", finished=[(held, 1)], now=timezone.now()) == set()
    # The lease expired and another worker took the job over: w1 may not complete it any more.
    Job.objects.filter(pk=held.id).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    queue.leases_reap(now=timezone.now())
    (taken_over,) = claim(worker="w1")  # even under the same worker name, a new attempt
    assert taken_over.attempts == 2
    assert queue.jobs_complete(worker_id="w1", finished=[(held, "stale")], now=timezone.now()) == set()
    assert queue.jobs_complete(worker_id="w1", finished=[(taken_over, {"ok": True})], now=timezone.now()) == {held.id}
    job = Job.objects.get(pk=held.id)
    assert (job.status, job.result, job.lease_expires_at) == (JobStatus.COMPLETED, {"ok": True}, None)


def test_a_result_that_is_not_json_is_kept_as_its_repr():
    echo.delay()
    (held,) = claim()
    queue.jobs_complete(worker_id="w1", finished=[(held, {1, 2})], now=timezone.now())
    assert Job.objects.get(pk=held.id).result == {"repr": "{1, 2}"}


def test_a_failure_schedules_the_retry_or_kills_the_job():
    echo.delay()
    (held,) = claim()
    retry_at = timezone.now() + timedelta(seconds=5)
    assert queue.job_fail(worker_id="w1", job=held, error="Traceback: boom", retry_at=retry_at, now=timezone.now())
    job = Job.objects.get(pk=held.id)
    assert (job.status, job.run_at, job.last_error, job.attempts) == (JobStatus.PENDING, retry_at, "Traceback: boom", 1)
    assert claim(now=retry_at - timedelta(seconds=1)) == []
    (again,) = claim(now=retry_at)
    assert queue.job_fail(worker_id="w1", job=again, error="Traceback: boom 2", retry_at=None, now=timezone.now())
    job.refresh_from_db()
    assert (job.status, job.attempts, job.last_error) == (JobStatus.DEAD, 2, "Traceback: boom 2")
    assert job.finished_at is not None
    assert not queue.job_fail(worker_id="w1", job=again, error="late", retry_at=None, now=timezone.now())


def test_expired_leases_go_back_counting_the_attempt_or_die_on_the_last_one():
    one_left = echo.apply_async(max_attempts=2)
    last = echo.apply_async(max_attempts=1)
    renewed = echo.delay()
    start = timezone.now()
    claim(worker="gone", lease=1.0, now=start)
    held = {job.id: job for job in Job.objects.all()}
    assert all(job.status == JobStatus.RUNNING for job in held.values())
    later = start + timedelta(seconds=0.8)
    kept = queue.leases_renew(
        worker_id="gone", jobs=[job for job in claim_view() if job.id == renewed.pk], lease_seconds=1.0, now=later
    )
    assert kept == {renewed.pk}
    reaped = queue.leases_reap(now=start + timedelta(seconds=1.5))
    assert {job_id for job_id, _ in reaped.requeued} == {one_left.pk}
    assert {job_id for job_id, _ in reaped.dead} == {last.pk}
    states = {job.pk: (job.status, job.attempts) for job in Job.objects.all()}
    assert states == {
        one_left.pk: (JobStatus.PENDING, 1),
        last.pk: (JobStatus.DEAD, 1),
        renewed.pk: (JobStatus.RUNNING, 1),
    }
    assert Job.objects.get(pk=one_left.pk).last_error == "lease expired: worker gone held attempt 1 of 2"


def claim_view():
    """ClaimedJob views of the RUNNING rows, as their worker holds them."""
    return [
        queue.ClaimedJob(
            id=job.pk,
            task=job.task,
            queue=job.queue,
            payload=job.payload,
            attempts=job.attempts,
            max_attempts=job.max_attempts,
            run_at=job.run_at,
            started_at=job.started_at,
        )
        for job in Job.objects.filter(status=JobStatus.RUNNING)
    ]


def test_shutdown_gives_back_unstarted_jobs_and_releases_started_ones():
    unstarted, started, exhausted = echo.delay(), echo.delay(), echo.apply_async(max_attempts=1)
    claim(worker="w1")
    held = {job.id: job for job in claim_view()}
    assert queue.jobs_unclaim(worker_id="w1", jobs=[held[unstarted.pk]]) == 1
    assert queue.jobs_release(worker_id="w1", jobs=[held[started.pk], held[exhausted.pk]], now=timezone.now()) == 2
    states = {job.pk: (job.status, job.attempts, job.started_at) for job in Job.objects.all()}
    assert states[unstarted.pk] == (JobStatus.PENDING, 0, None)
    assert states[started.pk][:2] == (JobStatus.PENDING, 1)
    assert states[exhausted.pk][:2] == (JobStatus.DEAD, 1)
    assert "released at shutdown: worker w1" in Job.objects.get(pk=started.pk).last_error


def test_an_idle_worker_knows_when_the_next_job_falls_due():
    assert queue.next_run_at(queues=[]) is None
    later = echo.apply_async(countdown=30, queue="a")
    farther = echo.apply_async(countdown=90, queue="b")
    assert queue.next_run_at(queues=[]) == later.run_at
    assert queue.next_run_at(queues=["b"]) == farther.run_at
    assert not queue.due_job_exists(queues=[], now=timezone.now())
    assert queue.due_job_exists(queues=["a"], now=later.run_at)
    assert not queue.due_job_exists(queues=["b"], now=later.run_at)


@pytest.mark.postgres
def test_worker_bookkeeping_commits_without_waiting_for_the_wal_flush_on_its_own_connection():
    with connection.cursor() as cursor:
        cursor.execute("SET synchronous_commit = on")
        queue.use_for_worker_bookkeeping()
        cursor.execute("SHOW synchronous_commit")
        assert cursor.fetchone() == ("off",)
        cursor.execute("SET synchronous_commit = on")  # leave the shared test connection as it was
    queue._prepared.connection = None
