"""API conventions shared by every app: error bodies, pagination, strict fields, body limits.

Every error body is {"detail": "...", "code": "..."}; a validation error adds "errors", the
per-field messages DRF produces.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied, RequestDataTooBig
from django.http import Http404
from rest_framework import exceptions, serializers, status
from rest_framework.pagination import PageNumberPagination
from rest_framework.parsers import JSONParser
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

MAX_PAGE_SIZE = 500


class Pagination(PageNumberPagination):
    """?page=N&page_size=M, M up to MAX_PAGE_SIZE."""

    page_size_query_param = "page_size"
    max_page_size = MAX_PAGE_SIZE


class StrictCharField(serializers.CharField):
    """A CharField that refuses numbers and booleans instead of turning them into strings."""

    default_error_messages = {"invalid": "Must be a string."}

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return str(super().to_internal_value(data))


class RequestBodyTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "Request body too large."
    default_code = "request_too_large"


class LimitedJSONParser(JSONParser):
    """JSONParser that reads at most DATA_UPLOAD_MAX_MEMORY_SIZE bytes, whatever the client says."""

    def body_limit(self) -> int:
        """The largest body this parser reads; subclasses raise it for endpoints with large bodies."""
        return int(settings.DATA_UPLOAD_MAX_MEMORY_SIZE)

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Mapping[str, Any] | None = None) -> Any:
        limit = self.body_limit()
        body = stream.read(limit + 1) if stream is not None else b""
        if len(body) > limit:
            raise RequestBodyTooLarge()
        try:
            return json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise exceptions.ParseError(f"JSON parse error - {exc}") from None


def _first_error(errors: Any, path: tuple[str, ...] = ()) -> tuple[tuple[str, ...], Any] | None:
    """The first error in DRF's nested structure and the path to it (fields, list indexes)."""
    if isinstance(errors, dict):
        for field, value in errors.items():
            found = _first_error(value, path if field in ("non_field_errors", "detail") else (*path, str(field)))
            if found is not None:
                return found
        return None
    if isinstance(errors, list):
        for index, item in enumerate(errors):
            found = _first_error(item, path if isinstance(item, str) else (*path, str(index)))
            if found is not None:
                return found
        return None
    return path, errors


def _first_message(errors: Any) -> tuple[str, str]:
    """The first (message, code) of an error structure, the message prefixed by its field path
    ("username: ...", "jobs.2.priority: ...")."""
    found = _first_error(errors)
    if found is None:
        return "Invalid input.", "invalid"
    path, error = found
    code = error.code if isinstance(error, exceptions.ErrorDetail) and error.code else "invalid"
    return (f"{'.'.join(path)}: {error}" if path else str(error)), code


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's handler, with every error body reshaped to {"detail", "code"[, "errors"]}."""
    if isinstance(exc, RequestDataTooBig):
        exc = RequestBodyTooLarge()
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        detail, code = _first_message(exc.detail)
        response.data = {"detail": detail, "code": code, "errors": exc.detail}
        return response
    if isinstance(exc, Http404):
        response.data = {"detail": "Not found.", "code": "not_found"}
    elif isinstance(exc, PermissionDenied):
        response.data = {"detail": "You do not have permission to perform this action.", "code": "permission_denied"}
    elif isinstance(exc, exceptions.APIException):
        detail, code = _first_message(exc.detail)
        if isinstance(exc.detail, dict) and "code" in exc.detail:
            code = str(exc.detail["code"])
        response.data = {"detail": detail, "code": code}
    return response
