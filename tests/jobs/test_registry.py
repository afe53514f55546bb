import asyncio
from datetime import timedelta

import pytest
from django.core.management import get_commands
from django.utils import timezone

from helios_site import config
from jobs.exceptions import InvalidJob, TaskAlreadyRegistered, UnknownTask
from jobs.models import Job, JobStatus
from jobs.registry import TaskRegistry, current_job, registry, task
from jobs.retry import RetryStrategy
from jobs.tasks import echo


def test_the_built_in_tasks_are_discovered_at_start():
    assert {"echo", "sleep", "http"} <= set(registry.names())
    assert registry.get("sleep").is_async


def test_runworker_resolves_to_the_jobs_app_not_channels():
    assert get_commands()["runworker"] == "jobs"


def test_a_second_function_cannot_take_a_registered_name():
    tasks = TaskRegistry()

    @task(name="send_mail", registry=tasks)
    def send_mail() -> None: ...

    def other() -> None: ...

    with pytest.raises(TaskAlreadyRegistered, match=r"'send_mail' is taken by .*send_mail; .*other cannot use it"):
        task(name="send_mail", registry=tasks)(other)
    assert tasks.get("send_mail").func is send_mail.func


def test_importing_the_same_function_again_is_not_a_duplicate():
    tasks = TaskRegistry()

    def job() -> None: ...

    task(name="again", registry=tasks)(job)
    task(name="again", registry=tasks)(job)  # a module imported twice declares the same function twice
    assert tasks.names() == ["again"]


OWN_TASKS = TaskRegistry()


@task(registry=OWN_TASKS, queue="mail", max_attempts=5, retry_backoff=2.5, timeout=30)
def notify(*, to: str) -> str:
    return to


def test_a_task_is_named_after_its_function_by_default_and_keeps_its_options():
    assert OWN_TASKS.get("tests.jobs.test_registry.notify") is notify
    assert notify.name == "tests.jobs.test_registry.notify"
    assert (notify.queue, notify.max_attempts, notify.timeout) == ("mail", 5, 30)
    assert notify.retry == RetryStrategy(base_delay=2.5)
    assert notify(to="x") == "x"  # calling it runs it here, like Celery
    assert current_job() is None  # outside a worker


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "a function defined inside another needs a name"),
        ({"name": "has space"}, "task name"),
        ({"name": "x", "max_attempts": 0}, "max_attempts"),
        ({"name": "x", "timeout": 0}, "timeout"),
    ],
)
def test_bad_task_declarations_are_refused(options, message):
    with pytest.raises(ValueError, match=message):
        task(registry=TaskRegistry(), **options)(lambda: None)


def test_unknown_task_names_raise():
    with pytest.raises(UnknownTask, match="unknown task 'nope'"):
        registry.get("nope")


def test_payloads_are_checked_against_the_signature():
    tasks = TaskRegistry()

    @task(name="add", registry=tasks)
    def add(*, a: int, b: int = 0) -> int:
        return a + b

    add.validate({"a": 1})
    with pytest.raises(InvalidJob, match="missing a required argument: 'a'"):
        add.validate({"b": 1})
    with pytest.raises(InvalidJob, match="unexpected keyword argument 'c'"):
        add.validate({"a": 1, "c": 2})


def test_async_tasks_are_recognised_and_run_directly():
    tasks = TaskRegistry()

    @task(name="twice", registry=tasks)
    async def twice(*, n: int) -> int:
        await asyncio.sleep(0)
        return 2 * n

    assert twice.is_async
    assert asyncio.run(twice(n=4)) == 8


@pytest.mark.django_db
def test_delay_and_apply_async_enqueue_like_celery():
    job = echo.delay(message="hi")
    assert (job.task, job.payload, job.status, job.queue, job.max_attempts) == (
        "echo",
        {"message": "hi"},
        JobStatus.PENDING,
        "default",
        3,
    )
    later = echo.apply_async(kwargs={"n": 1}, countdown=60, priority=5, queue="bulk", max_attempts=7)
    assert (later.priority, later.queue, later.max_attempts) == (5, "bulk", 7)
    assert abs((later.run_at - later.created_at).total_seconds() - 60) < 0.5
    eta = timezone.now() + timedelta(hours=1)
    assert echo.apply_async(eta=eta).run_at == eta
    assert Job.objects.count() == 3
    stored = Job.objects.get(pk=later.pk)
    assert stored.payload == {"n": 1}
    assert stored.run_at == later.run_at


@pytest.mark.django_db
def test_a_task_s_own_max_attempts_beats_the_worker_setting(settings):
    settings.CONFIG = config.load({"HELIOS_WORKER_MAX_ATTEMPTS": "9"})
    created = task(name="tests.five_attempts", max_attempts=5)(lambda: None)
    try:
        assert created.delay().max_attempts == 5
        assert echo.delay().max_attempts == 9
    finally:
        registry.unregister("tests.five_attempts")
