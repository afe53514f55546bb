"""Request id, access log and request metrics: the first two middlewares of every request."""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponse
from django.utils.functional import SimpleLazyObject, empty

from helios_site import metrics
from helios_site.logs import request_id_var

access_logger = logging.getLogger("helios.access")

REQUEST_ID_HEADER = "X-Request-ID"
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
_KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED_ROUTE = "<unmatched>"

GetResponse = Callable[[HttpRequest], Any]


class _DualMiddleware:
    """Base of a middleware that runs natively under both WSGI and ASGI (no thread hop)."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: GetResponse) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> HttpResponse | Awaitable[HttpResponse]:
        if self.is_async:
            return self._acall(request)
        before = self.before(request)
        return self.after(request, self.get_response(request), before)

    async def _acall(self, request: HttpRequest) -> HttpResponse:
        before = self.before(request)
        return self.after(request, await self.get_response(request), before)

    def before(self, request: HttpRequest) -> Any:
        raise NotImplementedError

    def after(self, request: HttpRequest, response: HttpResponse, before: Any) -> HttpResponse:
        raise NotImplementedError


class RequestIdMiddleware(_DualMiddleware):
    """Takes X-Request-ID from the client when it is sane, else makes one; echoes it back."""

    def before(self, request: HttpRequest) -> Any:
        offered = request.headers.get(REQUEST_ID_HEADER, "")
        request_id = offered if _VALID_REQUEST_ID.match(offered) else uuid.uuid4().hex
        request.request_id = request_id  # type: ignore[attr-defined]
        return request_id_var.set(request_id)

    def after(self, request: HttpRequest, response: HttpResponse, before: Any) -> HttpResponse:
        response[REQUEST_ID_HEADER] = request.request_id  # type: ignore[attr-defined]
        request_id_var.reset(before)
        return response


class RequestMetricsMiddleware(_DualMiddleware):
    """Counts and times each request by method, route template and status, and logs it."""

    def before(self, request: HttpRequest) -> Any:
        return time.perf_counter()

    def after(self, request: HttpRequest, response: HttpResponse, before: Any) -> HttpResponse:
        duration = time.perf_counter() - before
        match = request.resolver_match
        route = "/" + match.route if match is not None else UNMATCHED_ROUTE
        method = request.method if request.method in _KNOWN_METHODS else "OTHER"
        status = str(response.status_code)
        metrics.REQUESTS.labels(method, route, status).inc()
        metrics.REQUEST_DURATION.labels(method, route, status).observe(duration)
        access_logger.info(
            "%s %s %s",
            request.method,
            request.path,
            status,
            extra={
                "action": "http_request",
                "method": request.method,
                "path": request.path,
                "route": route,
                "status": response.status_code,
                "duration_ms": round(duration * 1000, 3),
                "remote_addr": request.META.get("REMOTE_ADDR"),
                "user_id": _authenticated_user_id(request),
            },
        )
        return response


def _authenticated_user_id(request: HttpRequest) -> Any:
    """The id of the user DRF or the session authenticated, without loading a session to find out.

    An unevaluated lazy user is left alone: evaluating it would query the database, which is not
    allowed from the event loop under ASGI, and means nobody asked who the user was anyway.
    """
    user = request.__dict__.get("user")
    if type(user) is SimpleLazyObject:
        user = None if user._wrapped is empty else user._wrapped
    if user is None or not user.is_authenticated:
        return None
    return user.pk
