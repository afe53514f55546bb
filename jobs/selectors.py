"""Reads of the jobs app: which jobs a user may see, and may change."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from accounts.permissions import JOBS_MANAGE, JOBS_READ_ALL, has_permission
from jobs.models import Job


def job_list(
    *, user: Any, status: str | None = None, queue: str | None = None, task: str | None = None
) -> QuerySet[Job]:
    """The jobs `user` may see (their own, or all with jobs.read_all), newest first, filtered."""
    jobs = Job.objects.all() if has_permission(user, JOBS_READ_ALL) else Job.objects.filter(owner=user)
    if status:
        jobs = jobs.filter(status=status)
    if queue:
        jobs = jobs.filter(queue=queue)
    if task:
        jobs = jobs.filter(task=task)
    return jobs


def job_get(*, user: Any, job_id: Any) -> Job:
    """One job `user` may see. Raises Job.DoesNotExist otherwise (so others' jobs are not disclosed)."""
    return job_list(user=user).get(pk=job_id)


def job_can_manage(*, user: Any, job: Job) -> bool:
    """Cancel and retry: the owner, or anyone holding jobs.manage."""
    return bool(job.owner_id is not None and job.owner_id == user.pk) or has_permission(user, JOBS_MANAGE)
