from __future__ import annotations

from typing import Any

from rest_framework import serializers

from helios_site.api import StrictCharField
from jobs import services
from jobs.conf import QUEUE_NAME
from jobs.models import Job, JobStatus

MAX_JOBS_PER_REQUEST = 10_000


class StrictIntegerField(serializers.IntegerField):
    """An IntegerField that refuses strings, booleans and fractions instead of converting them."""

    default_error_messages = {"invalid": "Must be an integer."}

    def to_internal_value(self, data: Any) -> int:
        if isinstance(data, bool) or not isinstance(data, int | float) or data != int(data):
            self.fail("invalid")
        return int(super().to_internal_value(int(data)))


class RejectUnknownFieldsMixin:
    """A misspelt optional field ("max_attempt") is an error, not silently ignored."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))  # type: ignore[attr-defined]
            if unknown:
                raise serializers.ValidationError({name: ["Unknown field."] for name in unknown})
        return super().to_internal_value(data)  # type: ignore[misc]


class EnqueueSerializer(RejectUnknownFieldsMixin, serializers.Serializer):
    payload = serializers.DictField(
        help_text='The task and its keyword arguments: {"task": "echo", "message": "hi"}.', allow_empty=False
    )
    queue = StrictCharField(max_length=64, required=False, help_text="Default: the task's queue.")
    priority = StrictIntegerField(
        required=False, default=0, min_value=services.MIN_PRIORITY, max_value=services.MAX_PRIORITY
    )
    max_attempts = StrictIntegerField(required=False, min_value=1, max_value=services.MAX_ATTEMPTS)
    run_at = serializers.DateTimeField(required=False, help_text="Not before this time (ISO 8601). Default: now.")
    idempotency_key = StrictCharField(
        max_length=services.MAX_IDEMPOTENCY_KEY_LENGTH,
        required=False,
        help_text="A repeated request with the same key returns the first job instead of a new one.",
    )

    def validate_payload(self, payload: dict[str, Any]) -> dict[str, Any]:
        task = payload.get("task")
        if not isinstance(task, str) or not task:
            raise serializers.ValidationError('Must name the task: {"task": "echo", ...}.')
        return payload

    def validate_queue(self, queue: str) -> str:
        if not QUEUE_NAME.match(queue):
            raise serializers.ValidationError("1-64 of [A-Za-z0-9_.:-].")
        return queue

    def spec(self, owner: Any) -> services.JobSpec:
        return spec_from(self.validated_data, owner)


def spec_from(data: dict[str, Any], owner: Any) -> services.JobSpec:
    payload = dict(data["payload"])
    task = payload.pop("task")
    return services.JobSpec(
        task=task,
        payload=payload,
        queue=data.get("queue"),
        priority=data.get("priority", 0),
        run_at=data.get("run_at"),
        max_attempts=data.get("max_attempts"),
        idempotency_key=data.get("idempotency_key"),
        owner=owner,
    )


class JobSerializer(serializers.ModelSerializer):
    owner = serializers.IntegerField(source="owner_id", allow_null=True, read_only=True)

    class Meta:
        model = Job
        fields = [
            "id",
            "task",
            "queue",
            "payload",
            "status",
            "priority",
            "attempts",
            "max_attempts",
            "run_at",
            "lease_expires_at",
            "worker_id",
            "last_error",
            "result",
            "idempotency_key",
            "owner",
            "created_at",
            "started_at",
            "finished_at",
        ]
        read_only_fields = fields


class JobFilterSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=JobStatus.choices, required=False)
    queue = serializers.CharField(max_length=64, required=False)
    task = serializers.CharField(max_length=128, required=False)
