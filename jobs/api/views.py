"""The jobs API: enqueue (one or many), list, read, cancel, retry. Views validate, call a service or
a selector, and answer."""

from __future__ import annotations

import uuid
from typing import Any

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.exceptions import APIException, NotFound, PermissionDenied, ValidationError
from rest_framework.permissions import BasePermission, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.api.serializers import ErrorSerializer
from accounts.permissions import JOBS_ENQUEUE, require
from helios_site.api import Pagination
from jobs import selectors, services
from jobs.api import serializers
from jobs.exceptions import InvalidJob, JobStateConflict
from jobs.models import Job

BAD_REQUEST = OpenApiResponse(ErrorSerializer, description="Malformed body, unknown task or bad field.")
FORBIDDEN = OpenApiResponse(ErrorSerializer, description="Missing permission.")
NOT_FOUND = OpenApiResponse(ErrorSerializer, description="No such job among those you may see.")
CONFLICT = OpenApiResponse(ErrorSerializer, description="The job is not in a state that allows this.")


class Conflict(APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "The job is not in a state that allows this."
    default_code = "invalid_state"


def _invalid(exc: InvalidJob) -> ValidationError:
    field = "payload.task" if exc.field.endswith("task") and not exc.field.startswith("jobs[") else exc.field
    code = "unknown_task" if exc.message.startswith("unknown task") else "invalid"
    return ValidationError({field: [exc.message]}, code=code)


class JobListView(APIView):
    def get_permissions(self) -> list[BasePermission]:
        if self.request.method == "POST":
            return [require(JOBS_ENQUEUE)()]
        return [IsAuthenticated()]

    @extend_schema(
        parameters=[serializers.JobFilterSerializer],
        responses={200: serializers.JobSerializer(many=True), 400: BAD_REQUEST},
        tags=["jobs"],
        summary="List your jobs (everyone's with jobs.read_all), newest first",
    )
    def get(self, request: Request) -> Response:
        filters = serializers.JobFilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        jobs = selectors.job_list(user=request.user, **filters.validated_data)
        paginator = Pagination()
        page = paginator.paginate_queryset(jobs, request, view=self)
        return paginator.get_paginated_response(serializers.JobSerializer(page, many=True).data)

    @extend_schema(
        request=serializers.EnqueueSerializer,
        responses={
            201: serializers.JobSerializer,
            200: OpenApiResponse(serializers.JobSerializer, description="Idempotent replay: the first job."),
            400: BAD_REQUEST,
            403: FORBIDDEN,
        },
        tags=["jobs"],
        summary="Enqueue a job, or a list of up to 10,000 jobs written in one statement",
    )
    def post(self, request: Request) -> Response:
        if isinstance(request.data, list):
            return self._post_many(request, request.data)
        body = serializers.EnqueueSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            job, created = services.job_enqueue_many(specs=[body.spec(request.user)])[0]
        except InvalidJob as exc:
            raise _invalid(exc) from None
        except JobStateConflict as exc:  # the holder of the key vanished between two statements
            raise Conflict(str(exc)) from None
        headers = {} if created else {"Idempotent-Replayed": "true"}
        return Response(
            serializers.JobSerializer(job).data,
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
            headers=headers,
        )

    def _post_many(self, request: Request, items: list[Any]) -> Response:
        if not items:
            raise ValidationError({"jobs": ["Send at least one job."]})
        if len(items) > serializers.MAX_JOBS_PER_REQUEST:
            raise ValidationError({"jobs": [f"At most {serializers.MAX_JOBS_PER_REQUEST} jobs per request."]})
        body = serializers.EnqueueSerializer(data=items, many=True)
        if not body.is_valid():
            errors = body.errors
            # Per item: a list with an entry for each, or (newer DRF) a dict of the failing ones.
            failing = sorted(errors.items()) if isinstance(errors, dict) else [(i, e) for i, e in enumerate(errors)]
            index, first = next((int(i), e) for i, e in failing if e)
            raise ValidationError({f"jobs[{index}].{field}": messages for field, messages in first.items()})
        specs = [serializers.spec_from(data, request.user) for data in body.validated_data]
        try:
            enqueued = services.job_enqueue_many(specs=specs)
        except InvalidJob as exc:
            raise _invalid(exc) from None
        except JobStateConflict as exc:
            raise Conflict(str(exc)) from None
        return Response(
            serializers.JobSerializer([outcome.job for outcome in enqueued], many=True).data,
            status=status.HTTP_201_CREATED,
        )


def _visible_job(request: Request, job_id: str) -> Job:
    try:
        return selectors.job_get(user=request.user, job_id=uuid.UUID(job_id))
    except (ValueError, Job.DoesNotExist):
        raise NotFound() from None


class JobDetailView(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        responses={200: serializers.JobSerializer, 404: NOT_FOUND},
        tags=["jobs"],
        summary="One job: status, attempts, result or last error",
    )
    def get(self, request: Request, job_id: str) -> Response:
        return Response(serializers.JobSerializer(_visible_job(request, job_id)).data)


class _JobActionView(APIView):
    permission_classes = [IsAuthenticated]

    def act(self, job: Job) -> Job:
        raise NotImplementedError

    def post(self, request: Request, job_id: str) -> Response:
        job = _visible_job(request, job_id)
        if not selectors.job_can_manage(user=request.user, job=job):
            raise PermissionDenied("You need the jobs.manage permission to change another user's job.")
        try:
            job = self.act(job)
        except JobStateConflict as exc:
            raise Conflict(str(exc)) from None
        return Response(serializers.JobSerializer(job).data)


@extend_schema(
    request=None,
    responses={200: serializers.JobSerializer, 403: FORBIDDEN, 404: NOT_FOUND, 409: CONFLICT},
    tags=["jobs"],
    summary="Cancel a PENDING job (yours, or anyone's with jobs.manage)",
)
class JobCancelView(_JobActionView):
    def act(self, job: Job) -> Job:
        return services.job_cancel(job=job)


@extend_schema(
    request=None,
    responses={200: serializers.JobSerializer, 403: FORBIDDEN, 404: NOT_FOUND, 409: CONFLICT},
    tags=["jobs"],
    summary="Run a DEAD or CANCELLED job again from its first attempt",
)
class JobRetryView(_JobActionView):
    def act(self, job: Job) -> Job:
        return services.job_retry(job=job)
