import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from jobs.models import Job, JobStatus
from jobs.tasks import echo

pytestmark = pytest.mark.django_db

JOBS = "/api/v1/jobs"


@pytest.fixture
def alice(make_user):
    return make_user("alice")


@pytest.fixture
def as_alice(api_as, alice):
    return api_as(alice)


def test_enqueue_by_task_name_answers_201_with_the_job(as_alice, alice):
    response = as_alice.post(
        JOBS,
        {"payload": {"task": "echo", "message": "hi"}, "priority": 3, "max_attempts": 5, "queue": "mail"},
        format="json",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["task"], body["payload"], body["status"]) == ("echo", {"message": "hi"}, "PENDING")
    assert body["queue"] == "mail"
    assert (body["priority"], body["max_attempts"], body["attempts"], body["owner"]) == (3, 5, 0, alice.pk)
    job = Job.objects.get(pk=body["id"])
    assert (job.owner, job.payload, job.queue) == (alice, {"message": "hi"}, "mail")


def test_run_at_schedules_the_job(as_alice):
    response = as_alice.post(JOBS, {"payload": {"task": "echo"}, "run_at": "2099-01-01T00:00:00Z"}, format="json")
    assert response.status_code == 201
    assert response.json()["run_at"] == "2099-01-01T00:00:00Z"


@pytest.mark.parametrize(
    ("body", "code", "detail"),
    [
        ({"payload": {"task": "nope"}}, "unknown_task", "payload.task: unknown task 'nope'"),
        ({"payload": {"message": "no task"}}, "invalid", "payload: Must name the task"),
        ({"payload": {"task": "sleep"}}, "invalid", "missing a required argument: 'seconds'"),
        ({"payload": {"task": "sleep", "seconds": 99999}}, "invalid", "seconds must be a number from 0 to 3600"),
        ({"payload": {"task": "http", "url": "file:///etc/passwd"}}, "invalid", "absolute http"),
        ({"payload": {"task": "echo"}, "priority": "5"}, "invalid", "priority: Must be an integer."),
        ({"payload": {"task": "echo"}, "max_attempts": 0}, "min_value", "max_attempts"),
        ({"payload": {"task": "echo"}, "max_attempt": 2}, "invalid", "max_attempt: Unknown field."),
        ({"payload": {"task": "echo"}, "queue": "a b"}, "invalid", "queue: 1-64"),
        ({"payload": {"task": "echo"}, "run_at": "tomorrow"}, "invalid", "run_at"),
        ({"payload": "echo"}, "not_a_dict", "payload"),
        ({}, "required", "payload"),
    ],
)
def test_bad_jobs_are_400_with_the_field_at_fault(as_alice, body, code, detail):
    response = as_alice.post(JOBS, body, format="json")
    assert response.status_code == 400, response.content
    assert response.json()["code"] == code
    assert detail in response.json()["detail"]
    assert not Job.objects.exists()


def test_a_repeated_idempotency_key_returns_the_first_job(as_alice):
    body = {"payload": {"task": "echo", "n": 1}, "idempotency_key": "order-7"}
    first = as_alice.post(JOBS, body, format="json")
    again = as_alice.post(JOBS, {**body, "payload": {"task": "echo", "n": 2}}, format="json")
    assert first.status_code == 201
    assert again.status_code == 200
    assert again["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    assert again.json()["payload"] == {"n": 1}
    assert Job.objects.count() == 1


def test_a_list_of_jobs_is_enqueued_in_one_statement(as_alice):
    items = [{"payload": {"task": "echo", "n": n}} for n in range(500)]
    with CaptureQueriesContext(connection) as queries:
        response = as_alice.post(JOBS, items, format="json")
    assert response.status_code == 201, response.content
    assert [job["payload"]["n"] for job in response.json()] == list(range(500))
    assert len([q for q in queries if q["sql"].lstrip().startswith("INSERT INTO jobs_job")]) == 1
    assert Job.objects.count() == 500


def test_one_bad_job_in_a_list_refuses_the_list_and_names_its_index(as_alice):
    items = [{"payload": {"task": "echo"}}, {"payload": {"task": "echo"}}, {"payload": {"task": "nope"}}]
    response = as_alice.post(JOBS, items, format="json")
    assert response.status_code == 400
    assert response.json()["detail"] == "jobs[2].task: unknown task 'nope'"
    items[2] = {"payload": {"task": "echo"}, "priority": "high"}
    response = as_alice.post(JOBS, items, format="json")
    assert response.status_code == 400
    assert response.json()["detail"] == "jobs[2].priority: Must be an integer."
    assert as_alice.post(JOBS, [], format="json").status_code == 400
    assert not Job.objects.exists()


def test_enqueue_needs_the_jobs_enqueue_permission(make_user, api_as):
    reader = make_user("reader", roles=())
    response = api_as(reader).post(JOBS, {"payload": {"task": "echo"}}, format="json")
    assert response.status_code == 403
    assert response.json() == {"detail": "You need the jobs.enqueue permission.", "code": "permission_denied"}
    assert APIClient().post(JOBS, {"payload": {"task": "echo"}}, format="json").status_code == 401


def test_users_see_their_own_jobs_and_jobs_read_all_sees_every_job(make_user, api_as, alice, as_alice):
    bob = make_user("bob")
    admin = make_user("root", roles=("admin",))
    mine = echo.apply_async(owner=alice)
    theirs = echo.apply_async(owner=bob)
    system = echo.delay()
    assert {job["id"] for job in as_alice.get(JOBS).json()["results"]} == {str(mine.pk)}
    assert as_alice.get(f"{JOBS}/{mine.pk}").status_code == 200
    assert as_alice.get(f"{JOBS}/{theirs.pk}").status_code == 404
    assert as_alice.get(f"{JOBS}/not-a-uuid").json() == {"detail": "Not found.", "code": "not_found"}
    everything = api_as(admin).get(JOBS).json()
    assert everything["count"] == 3
    assert {job["id"] for job in everything["results"]} == {str(mine.pk), str(theirs.pk), str(system.pk)}


def test_the_list_filters_by_status_queue_and_task_and_pages(as_alice, alice):
    for n in range(5):
        echo.apply_async(kwargs={"n": n}, owner=alice, queue="a" if n % 2 else "b")
    dead = echo.apply_async(owner=alice, queue="a")
    Job.objects.filter(pk=dead.pk).update(status=JobStatus.DEAD)
    assert as_alice.get(JOBS, {"status": "DEAD"}).json()["count"] == 1
    assert as_alice.get(JOBS, {"queue": "a", "status": "PENDING"}).json()["count"] == 2
    assert as_alice.get(JOBS, {"task": "sleep"}).json()["count"] == 0
    page = as_alice.get(JOBS, {"page_size": 4}).json()
    assert (page["count"], len(page["results"])) == (6, 4)
    rest = as_alice.get(page["next"]).json()
    assert {job["id"] for job in page["results"]}.isdisjoint({job["id"] for job in rest["results"]})
    assert as_alice.get(JOBS, {"status": "LOST"}).status_code == 400


def test_listing_takes_the_same_queries_for_5_or_50_jobs(api_as, alice):
    def queries_for_list():
        client = api_as(type(alice).objects.get(pk=alice.pk))  # a fresh user, as each request loads it
        with CaptureQueriesContext(connection) as queries:
            assert client.get(JOBS).status_code == 200
        return len(queries)

    echo.enqueue_many([{}] * 5, owner=alice)
    few = queries_for_list()
    echo.enqueue_many([{}] * 45, owner=alice)
    assert queries_for_list() == few


def test_owners_cancel_and_retry_their_jobs_and_jobs_manage_anyone_s(make_user, api_as, alice, as_alice):
    bob = make_user("bob")
    admin = make_user("root", roles=("admin",))
    mine, theirs = echo.apply_async(owner=alice), echo.apply_async(owner=bob)
    response = as_alice.post(f"{JOBS}/{mine.pk}/cancel")
    assert response.status_code == 200
    assert response.json()["status"] == "CANCELLED"
    conflict = as_alice.post(f"{JOBS}/{mine.pk}/cancel")
    assert conflict.status_code == 409
    assert conflict.json() == {
        "detail": "Job is CANCELLED; only PENDING jobs can be cancelled.",
        "code": "invalid_state",
    }
    assert as_alice.post(f"{JOBS}/{mine.pk}/retry").json()["status"] == "PENDING"
    assert as_alice.post(f"{JOBS}/{theirs.pk}/cancel").status_code == 404  # not even visible
    assert api_as(admin).post(f"{JOBS}/{theirs.pk}/cancel").status_code == 200


def test_reading_everything_is_not_managing_everything(make_user, api_as):
    auditor = make_user("auditor", roles=())
    auditor.user_permissions.add(*_perms("jobs.read_all"))
    job = echo.apply_async(owner=make_user("bob"))
    client = api_as(auditor)
    assert client.get(f"{JOBS}/{job.pk}").status_code == 200
    response = client.post(f"{JOBS}/{job.pk}/cancel")
    assert response.status_code == 403
    assert "jobs.manage" in response.json()["detail"]
    assert Job.objects.get(pk=job.pk).status == JobStatus.PENDING


def _perms(*codenames):
    from django.contrib.auth.models import Permission

    return Permission.objects.filter(content_type__app_label="accounts", codename__in=codenames)


def test_the_openapi_schema_documents_the_jobs_api(client):
    paths = client.get("/api/schema/?format=json").json()["paths"]
    assert set(paths[JOBS]) == {"get", "post"}
    # 429 and 503 come from the rate limiter on every API operation
    assert set(paths[JOBS]["post"]["responses"]) == {"200", "201", "400", "403", "429", "503"}
    assert set(paths[JOBS + "/{job_id}/cancel"]["post"]["responses"]) == {"200", "403", "404", "409", "429", "503"}
    assert JOBS + "/{job_id}/retry" in paths


def test_bodies_that_are_neither_a_job_nor_a_list_are_400(as_alice):
    for body in ("echo", 42, None):
        response = as_alice.post(JOBS, body, format="json")
        assert response.status_code == 400, body
    too_many = [{"payload": {"task": "echo"}}] * 10_001
    response = as_alice.post(JOBS, too_many, format="json")
    assert response.status_code == 400
    assert response.json()["detail"] == "jobs: At most 10000 jobs per request."
    assert not Job.objects.exists()
