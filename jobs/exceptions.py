"""What can go wrong with jobs and tasks, named after what happened."""

from __future__ import annotations


class TaskAlreadyRegistered(Exception):
    """Two different functions claim the same task name; refused when the second is imported."""


class UnknownTask(LookupError):
    """No task of this name is registered."""


class InvalidJob(ValueError):
    """A job cannot be enqueued as given. `field` names the culprit (payload, queue, run_at, ...)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class JobStateConflict(Exception):
    """The job is not in a state that allows the requested change (cancel a RUNNING job, ...)."""

    def __init__(self, message: str, status: str) -> None:
        super().__init__(message)
        self.status = status


class PermanentFailure(Exception):
    """Raised by a task when trying again cannot help: the job goes DEAD at once, without retries."""


class JobTimeout(BaseException):
    """The task ran past its timeout. A BaseException, so that a task's `except Exception` cannot swallow it."""
