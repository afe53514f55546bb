from datetime import datetime, timedelta

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from helios_site import config
from jobs import services
from jobs.exceptions import InvalidJob, JobStateConflict
from jobs.models import Job, JobStatus
from jobs.services import JobSpec
from jobs.tasks import echo

pytestmark = pytest.mark.django_db


def test_thousands_of_jobs_are_written_by_one_statement():
    with CaptureQueriesContext(connection) as queries:
        jobs = echo.enqueue_many([{"n": n} for n in range(5000)], priority=2, queue="bulk")
    assert len(queries) == 1
    assert queries[0]["sql"].lstrip().startswith("INSERT INTO jobs_job")
    assert Job.objects.filter(queue="bulk", priority=2, status=JobStatus.PENDING).count() == 5000
    assert [job.payload["n"] for job in jobs[:3]] == [0, 1, 2]
    stored = Job.objects.get(pk=jobs[1234].pk)
    assert stored.payload == {"n": 1234}
    assert (stored.task, stored.attempts, stored.worker_id, stored.last_error) == ("echo", 0, "", "")
    assert stored.run_at == jobs[1234].run_at


def test_enqueue_uses_the_caller_s_transaction_and_vanishes_with_its_rollback():
    with transaction.atomic(), CaptureQueriesContext(connection) as queries:
        kept = echo.delay(message="kept")
    # One INSERT and nothing else: no commit, no savepoint of its own.
    assert len(queries) == 1
    assert queries[0]["sql"].lstrip().startswith("INSERT INTO jobs_job")

    class Abort(Exception):
        pass

    lost: list[Job] = []

    def enqueue_then_fail() -> None:
        with transaction.atomic():
            lost.append(echo.delay(message="lost"))
            assert Job.objects.filter(pk=lost[0].pk).exists()
            raise Abort

    with pytest.raises(Abort):
        enqueue_then_fail()
    assert Job.objects.filter(pk=kept.pk).exists()
    assert not Job.objects.filter(pk=lost[0].pk).exists()


def test_an_idempotency_key_returns_the_first_job_per_owner(make_user):
    alice, bob = make_user("alice"), make_user("bob")
    first = services.job_enqueue(task="echo", payload={"n": 1}, idempotency_key="k1", owner=alice)
    again = services.job_enqueue(task="echo", payload={"n": 2}, idempotency_key="k1", owner=alice)
    assert first.created
    assert not again.created
    assert again.job.pk == first.job.pk
    assert again.job.payload == {"n": 1}  # the first job, as it was
    other_owner = services.job_enqueue(task="echo", idempotency_key="k1", owner=bob)
    assert other_owner.created, "keys are per owner"
    system = services.job_enqueue(task="echo", idempotency_key="k1")
    system_again = services.job_enqueue(task="echo", idempotency_key="k1")
    assert system.created
    assert system_again.job.pk == system.job.pk
    assert Job.objects.filter(idempotency_key="k1").count() == 3


def test_a_key_repeated_inside_one_batch_makes_one_job():
    specs = [JobSpec(task="echo", payload={"n": n}, idempotency_key="same") for n in range(3)]
    results = services.job_enqueue_many(specs=specs)
    assert [result.created for result in results] == [True, False, False]
    assert len({result.job.pk for result in results}) == 1
    assert Job.objects.filter(idempotency_key="same").count() == 1


def test_max_attempts_comes_from_the_job_then_the_task_then_worker_max_attempts(settings):
    settings.CONFIG = config.load({"HELIOS_WORKER_MAX_ATTEMPTS": "6"})
    assert services.job_enqueue(task="echo").job.max_attempts == 6
    assert services.job_enqueue(task="echo", max_attempts=2).job.max_attempts == 2


def test_a_run_at_in_the_past_means_now():
    job = services.job_enqueue(task="echo", run_at=timezone.now() - timedelta(days=1)).job
    assert job.run_at == job.created_at


@pytest.mark.parametrize(
    ("spec", "field", "message"),
    [
        ({"task": "nope"}, "task", "unknown task 'nope'"),
        ({"task": "echo", "payload": ["a"]}, "payload", "JSON object"),
        ({"task": "echo", "payload": {"when": datetime(2020, 1, 1)}}, "payload", "is not JSON"),
        ({"task": "echo", "payload": {"x": float("nan")}}, "payload", "is not JSON"),
        ({"task": "sleep", "payload": {}}, "payload", "missing a required argument: 'seconds'"),
        ({"task": "sleep", "payload": {"seconds": -1}}, "payload", "seconds must be a number"),
        ({"task": "echo", "queue": "no spaces"}, "queue", "not a queue name"),
        ({"task": "echo", "priority": 40000}, "priority", "between"),
        ({"task": "echo", "priority": "1"}, "priority", "integer"),
        ({"task": "echo", "max_attempts": 101}, "max_attempts", "from 1 to 100"),
        ({"task": "echo", "run_at": datetime(2030, 1, 1)}, "run_at", "time zone"),
        ({"task": "echo", "idempotency_key": "k" * 256}, "idempotency_key", "1 to 255"),
    ],
)
def test_bad_jobs_are_refused_before_anything_is_written(spec, field, message):
    with pytest.raises(InvalidJob, match=message) as error:
        services.job_enqueue(**spec)
    assert error.value.field == field
    assert not Job.objects.exists()


def test_one_bad_job_in_a_batch_refuses_the_batch_and_names_it():
    specs = [JobSpec(task="echo"), JobSpec(task="echo", queue="bad queue"), JobSpec(task="echo")]
    with pytest.raises(InvalidJob) as error:
        services.job_enqueue_many(specs=specs)
    assert error.value.field == "jobs[1].queue"
    assert not Job.objects.exists()


def test_countdown_and_eta_are_exclusive_and_countdown_must_be_a_number():
    with pytest.raises(InvalidJob, match="not both"):
        services.run_at_from(countdown=1, eta=timezone.now())
    with pytest.raises(InvalidJob, match="number of seconds"):
        services.run_at_from(countdown=float("inf"))


def test_cancel_only_pending_and_retry_only_dead_or_cancelled_jobs():
    job = echo.delay()
    cancelled = services.job_cancel(job=job)
    assert cancelled.status == JobStatus.CANCELLED
    assert cancelled.finished_at is not None
    with pytest.raises(JobStateConflict, match="Job is CANCELLED; only PENDING"):
        services.job_cancel(job=job)
    Job.objects.filter(pk=job.pk).update(status=JobStatus.DEAD, attempts=3, last_error="Traceback ...")
    retried = services.job_retry(job=job)
    assert (retried.status, retried.attempts, retried.finished_at) == (JobStatus.PENDING, 0, None)
    assert retried.last_error == "Traceback ...", "kept for the record"
    with pytest.raises(JobStateConflict, match="Job is PENDING; only DEAD or CANCELLED"):
        services.job_retry(job=job)
    Job.objects.filter(pk=job.pk).update(status=JobStatus.RUNNING)
    with pytest.raises(JobStateConflict, match="Job is RUNNING"):
        services.job_cancel(job=job)


def test_bulk_cancel_and_retry_touch_only_jobs_in_the_right_state():
    pending, running, dead = echo.delay(), echo.delay(), echo.delay()
    Job.objects.filter(pk=running.pk).update(status=JobStatus.RUNNING)
    Job.objects.filter(pk=dead.pk).update(status=JobStatus.DEAD)
    ids = [pending.pk, running.pk, dead.pk]
    assert services.jobs_cancel(ids=ids) == 1
    assert services.jobs_retry(ids=ids) == 2  # the DEAD one, and the one just cancelled
    assert dict(Job.objects.values_list("pk", "status")) == {
        pending.pk: JobStatus.PENDING,
        running.pk: JobStatus.RUNNING,
        dead.pk: JobStatus.PENDING,
    }


def test_deleting_users_deletes_their_jobs_even_with_the_same_keys(make_user):
    alice, bob = make_user("alice"), make_user("bob")
    services.job_enqueue(task="echo", idempotency_key="k", owner=alice)
    services.job_enqueue(task="echo", idempotency_key="k", owner=bob)
    services.job_enqueue(task="echo", idempotency_key="k")
    alice.delete()
    bob.delete()
    assert list(Job.objects.values_list("owner", "idempotency_key")) == [(None, "k")]
