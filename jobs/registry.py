"""Celery-style tasks: `@task` on a function in any app's tasks.py, then `my_task.delay(**kwargs)`.

Every task is registered by name in one registry when its module is imported. The jobs app
imports each installed app's `tasks` module at start (and the modules of `worker.imports`), so the
gateway knows every name (an unknown task is refused at enqueue time) and a worker can run them.
A second function under a name already taken is refused at that import, which stops the start.
"""

from __future__ import annotations

import contextvars
import importlib
import inspect
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, overload

from django.utils.module_loading import autodiscover_modules

from jobs.exceptions import InvalidJob, TaskAlreadyRegistered, UnknownTask
from jobs.retry import RetryStrategy, as_strategy

if TYPE_CHECKING:
    from jobs.models import Job

TASK_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")

Validator = Callable[[Mapping[str, Any]], None]


@dataclass(frozen=True)
class JobContext:
    """What a running task may know about its job: `jobs.registry.current_job()`."""

    id: str
    task: str
    queue: str
    attempt: int
    max_attempts: int
    worker_id: str


_current_job: contextvars.ContextVar[JobContext | None] = contextvars.ContextVar("current_job", default=None)


def current_job() -> JobContext | None:
    """The job the calling task runs for, or None outside a worker (a task called directly)."""
    return _current_job.get()


def set_current_job(context: JobContext | None) -> contextvars.Token[JobContext | None]:
    return _current_job.set(context)


class Task:
    """A registered task. Calling it runs the function here; delay/apply_async enqueue a job."""

    def __init__(
        self,
        func: Callable[..., Any],
        *,
        name: str,
        queue: str,
        max_attempts: int | None,
        retry: RetryStrategy,
        timeout: float | None,
        validator: Validator | None,
    ) -> None:
        self.func = func
        self.name = name
        self.queue = queue
        self.max_attempts = max_attempts
        self.retry = retry
        self.timeout = timeout
        self.validator = validator
        self.is_async = inspect.iscoroutinefunction(func)
        self.signature = inspect.signature(func)
        self.origin = f"{func.__module__}.{func.__qualname__}"
        self.__doc__ = func.__doc__
        self.__wrapped__ = func

    def __repr__(self) -> str:
        return f"<Task {self.name} ({self.origin})>"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.func(*args, **kwargs)

    def validate(self, payload: Mapping[str, Any]) -> None:
        """Refuse a payload this task cannot be called with. Raises InvalidJob."""
        try:
            self.signature.bind(**payload)
        except TypeError as exc:
            raise InvalidJob("payload", f"does not fit task {self.name}: {exc}") from None
        if self.validator is not None:
            try:
                self.validator(payload)
            except ValueError as exc:
                raise InvalidJob("payload", f"task {self.name}: {exc}") from None

    def delay(self, **kwargs: Any) -> Job:
        """Enqueue a job calling this task with `kwargs`, with the task's defaults. Returns the Job."""
        return self.apply_async(kwargs=kwargs)

    def apply_async(
        self,
        kwargs: Mapping[str, Any] | None = None,
        *,
        countdown: float | None = None,
        eta: datetime | None = None,
        priority: int = 0,
        queue: str | None = None,
        idempotency_key: str | None = None,
        max_attempts: int | None = None,
        owner: Any = None,
    ) -> Job:
        """Enqueue one job, like Celery's apply_async. `countdown` (seconds) or `eta` delay it.

        Written in the caller's transaction when there is one, so that it is seen exactly when the
        caller commits. With an `idempotency_key` already used (by the same owner), the earlier job
        is returned instead of a new one.
        """
        from jobs import services

        return services.job_enqueue(
            task=self.name,
            payload=dict(kwargs or {}),
            queue=queue,
            priority=priority,
            run_at=services.run_at_from(countdown=countdown, eta=eta),
            max_attempts=max_attempts,
            idempotency_key=idempotency_key,
            owner=owner,
        ).job

    def enqueue_many(
        self,
        payloads: Iterable[Mapping[str, Any]],
        *,
        countdown: float | None = None,
        eta: datetime | None = None,
        priority: int = 0,
        queue: str | None = None,
        max_attempts: int | None = None,
        owner: Any = None,
    ) -> list[Job]:
        """Enqueue one job per payload in a single INSERT statement; returns the Jobs in order."""
        from jobs import services

        run_at = services.run_at_from(countdown=countdown, eta=eta)
        specs = [
            services.JobSpec(
                task=self.name,
                payload=dict(payload),
                queue=queue,
                priority=priority,
                run_at=run_at,
                max_attempts=max_attempts,
                owner=owner,
            )
            for payload in payloads
        ]
        return [outcome.job for outcome in services.job_enqueue_many(specs=specs)]


class TaskRegistry:
    """Tasks by name. Registering a second function under a taken name raises TaskAlreadyRegistered."""

    def __init__(self) -> None:
        self._tasks: dict[str, Task] = {}

    def register(self, task: Task) -> None:
        existing = self._tasks.get(task.name)
        if existing is not None and existing.origin != task.origin:
            raise TaskAlreadyRegistered(
                f"task name {task.name!r} is taken by {existing.origin}; {task.origin} cannot use it too"
            )
        self._tasks[task.name] = task

    def unregister(self, name: str) -> None:
        self._tasks.pop(name, None)

    def get(self, name: str) -> Task:
        try:
            return self._tasks[name]
        except KeyError:
            raise UnknownTask(f"unknown task {name!r}") from None

    def __contains__(self, name: object) -> bool:
        return name in self._tasks

    def names(self) -> list[str]:
        return sorted(self._tasks)


registry = TaskRegistry()


@overload
def task(func: Callable[..., Any], /) -> Task: ...


@overload
def task(
    *,
    name: str | None = None,
    queue: str = "default",
    max_attempts: int | None = None,
    retry_backoff: float | bool | RetryStrategy | None = None,
    timeout: float | None = None,
    validator: Validator | None = None,
    registry: TaskRegistry = registry,
) -> Callable[[Callable[..., Any]], Task]: ...


def task(
    func: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    queue: str = "default",
    max_attempts: int | None = None,
    retry_backoff: float | bool | RetryStrategy | None = None,
    timeout: float | None = None,
    validator: Validator | None = None,
    registry: TaskRegistry = registry,
) -> Task | Callable[[Callable[..., Any]], Task]:
    """Declare a task: `@task` or `@task(name=..., max_attempts=..., retry_backoff=..., timeout=..., queue=...)`.

    name: defaults to "<module>.<function>". max_attempts: defaults to worker.max_attempts.
    retry_backoff: a RetryStrategy, or the base delay in seconds of the default exponential backoff.
    timeout: seconds one attempt may run; past it the attempt fails (and is retried).
    validator: called with the payload at enqueue time; a ValueError refuses the job.
    The function takes keyword arguments only: a job's payload is a JSON object. It may be async.
    """

    def wrap(function: Callable[..., Any]) -> Task:
        task_name = name or f"{function.__module__}.{function.__qualname__}"
        if name is None and "<locals>" in task_name:
            raise ValueError(f"{task_name}: a function defined inside another needs a name: @task(name=...)")
        if not TASK_NAME.match(task_name):
            raise ValueError(f"task name {task_name!r}: use 1-128 of [A-Za-z0-9_.:-]")
        if max_attempts is not None and max_attempts < 1:
            raise ValueError(f"task {task_name}: max_attempts must be at least 1")
        if timeout is not None and timeout <= 0:
            raise ValueError(f"task {task_name}: timeout must be positive")
        created = Task(
            function,
            name=task_name,
            queue=queue,
            max_attempts=max_attempts,
            retry=as_strategy(retry_backoff),
            timeout=timeout,
            validator=validator,
        )
        registry.register(created)
        return created

    return wrap(func) if func is not None else wrap


def autodiscover(extra_modules: Iterable[str] = ()) -> None:
    """Import every installed app's `tasks` module, then `extra_modules` (worker.imports)."""
    autodiscover_modules("tasks")
    for module in extra_modules:
        importlib.import_module(module)
