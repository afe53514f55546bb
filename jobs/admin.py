"""Jobs in the admin: every job (filters, search, bulk retry and cancel) and the dead-letter queue.

Jobs are read-only here: they change through the services (retry, cancel) or a worker, never by
editing fields, which could put a RUNNING job's lease and status out of step.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

from jobs import services
from jobs.models import DeadLetter, Job, JobStatus


class _ReadOnlyJobAdmin(admin.ModelAdmin):
    list_select_related = ["owner"]
    search_fields = ["=id", "task", "queue", "idempotency_key", "worker_id", "owner__username", "last_error"]
    date_hierarchy = "created_at"
    list_per_page = 100
    readonly_fields = [
        "id",
        "task",
        "queue",
        "status",
        "payload",
        "priority",
        "attempts",
        "max_attempts",
        "run_at",
        "lease_expires_at",
        "worker_id",
        "result",
        "idempotency_key",
        "owner",
        "created_at",
        "started_at",
        "finished_at",
        "error_traceback",
    ]
    exclude = ["last_error"]
    actions = ["retry_jobs", "cancel_jobs"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.display(description="last error")
    def error_traceback(self, job: Job) -> str:
        return format_html('<pre style="white-space: pre-wrap">{}</pre>', job.last_error) if job.last_error else "-"

    @admin.display(description="attempts")
    def attempts_of(self, job: Job) -> str:
        return f"{job.attempts}/{job.max_attempts}"

    @admin.action(description="Retry selected DEAD or CANCELLED jobs (attempts reset)", permissions=["change"])
    def retry_jobs(self, request: HttpRequest, queryset: QuerySet[Job]) -> None:
        ids = list(queryset.values_list("pk", flat=True))
        retried = services.jobs_retry(ids=ids)
        self._report(request, retried, len(ids), "retried", "only DEAD or CANCELLED jobs can be retried")

    @admin.action(description="Cancel selected PENDING jobs", permissions=["change"])
    def cancel_jobs(self, request: HttpRequest, queryset: QuerySet[Job]) -> None:
        ids = list(queryset.values_list("pk", flat=True))
        cancelled = services.jobs_cancel(ids=ids)
        self._report(request, cancelled, len(ids), "cancelled", "only PENDING jobs can be cancelled")

    def _report(self, request: HttpRequest, done: int, selected: int, verb: str, rule: str) -> None:
        self.message_user(request, f"{done} of {selected} jobs {verb}.", messages.SUCCESS)
        if done < selected:
            self.message_user(request, f"{selected - done} skipped: {rule}.", messages.WARNING)


@admin.register(Job)
class JobAdmin(_ReadOnlyJobAdmin):
    list_display = ["id", "task", "queue", "status", "attempts_of", "priority", "run_at", "owner", "created_at"]
    list_filter = ["status", "queue", "task"]


@admin.register(DeadLetter)
class DeadLetterAdmin(_ReadOnlyJobAdmin):
    """The dead-letter queue: jobs that used all their attempts, with the error that ended them."""

    list_display = ["id", "task", "queue", "attempts_of", "finished_at", "error_summary", "owner"]
    list_filter = ["queue", "task"]
    actions = ["retry_jobs"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Job]:
        return super().get_queryset(request).filter(status=JobStatus.DEAD)

    @admin.display(description="error")
    def error_summary(self, job: Job) -> str:
        lines = job.last_error.strip().splitlines()
        return lines[-1][:200] if lines else "-"
