"""The job table: one row per job, from enqueue to COMPLETED, DEAD or CANCELLED."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone


class JobStatus(models.TextChoices):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    DEAD = "DEAD"
    CANCELLED = "CANCELLED"


FINISHED_STATUSES = (JobStatus.COMPLETED, JobStatus.DEAD, JobStatus.CANCELLED)


class Job(models.Model):
    """A call of a task with a JSON payload, and everything that happened to it.

    `attempts` counts claims: a worker increments it when it takes the job, so a run that was cut
    short (its worker died and the lease expired) counts too. `lease_expires_at` is the visibility
    timeout of a RUNNING job; the worker's heartbeat pushes it forward while the task runs.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    queue = models.CharField(max_length=64, default="default")
    task = models.CharField(max_length=128)
    payload = models.JSONField(default=dict, blank=True, help_text="The task's keyword arguments.")
    status = models.CharField(max_length=16, choices=JobStatus.choices, default=JobStatus.PENDING)
    priority = models.SmallIntegerField(default=0, help_text="Higher runs first; then the oldest job.")
    attempts = models.PositiveIntegerField(default=0)
    max_attempts = models.PositiveIntegerField(default=3)
    run_at = models.DateTimeField(default=timezone.now, help_text="Not run before this time.")
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    worker_id = models.CharField(max_length=128, blank=True, default="", help_text="The worker of the last attempt.")
    last_error = models.TextField(blank=True, default="", help_text="The traceback of the last failed attempt.")
    result = models.JSONField(null=True, blank=True)
    # NULL, not "": jobs without a key must not collide in the unique constraints below.
    idempotency_key = models.CharField(max_length=255, null=True, blank=True)  # noqa: DJ001
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        # Jobs belong to their owner: deleting the user deletes them. (SET_NULL would turn two
        # users' jobs with the same idempotency key into two colliding jobs without an owner.)
        on_delete=models.CASCADE,
        related_name="jobs",
        db_index=False,  # jobs_owner_created_idx serves look-ups by owner
    )
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "id"]  # bulk-enqueued jobs share created_at: id keeps pages stable
        indexes = [
            # The claim: due PENDING jobs by priority then age (the queue filter applies on the way).
            # Also what an idle worker reads to find when the next scheduled job is due.
            models.Index(
                fields=["-priority", "created_at"], condition=Q(status="PENDING"), name="jobs_pending_claim_idx"
            ),
            # Expired leases, found by every worker's reaper.
            models.Index(fields=["lease_expires_at"], condition=Q(status="RUNNING"), name="jobs_running_lease_idx"),
            models.Index(fields=["owner", "-created_at"], name="jobs_owner_created_idx"),
            models.Index(fields=["status", "-created_at"], name="jobs_status_created_idx"),
            models.Index(fields=["-created_at"], name="jobs_created_idx"),
        ]
        constraints = [
            # An idempotency key is unique per owner, and among jobs without an owner.
            models.UniqueConstraint(
                "owner",
                "idempotency_key",
                condition=Q(idempotency_key__isnull=False, owner__isnull=False),
                name="jobs_owner_idempotency_key_uniq",
            ),
            models.UniqueConstraint(
                "idempotency_key",
                condition=Q(idempotency_key__isnull=False, owner__isnull=True),
                name="jobs_system_idempotency_key_uniq",
            ),
            models.CheckConstraint(condition=Q(max_attempts__gte=1), name="jobs_max_attempts_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.task} {self.id} ({self.status})"


class DeadLetter(Job):
    """The dead-letter queue: DEAD jobs, with their own admin view."""

    class Meta:
        proxy = True
        verbose_name = "dead-letter job"
        verbose_name_plural = "dead-letter queue"
