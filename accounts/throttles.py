"""DRF throttles: the gateway's rate limiter over ATLAS, and the login throttles against guessing.

AtlasRateThrottle is in DEFAULT_THROTTLE_CLASSES, so every DRF view is limited. DRF checks
throttles after authentication and permissions; views that derive from RateLimitFirstMixin count
the request first, so that a 401 or a 403 is counted and carries the rate limit headers too.
"""

from __future__ import annotations

from typing import Any

from rest_framework import exceptions
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle, SimpleRateThrottle

from accounts.client_ip import request_client_address
from accounts.conf import rate_limit_settings
from accounts.ratelimit import DENIED, attach_decision, bucket_identity, rate_limiter
from accounts.selectors import user_rate_policy
from atlas.client import AtlasUnavailable
from helios_site.errors import ServiceUnavailable


class RateLimiterUnavailable(ServiceUnavailable):
    """The limiter fails closed and ATLAS does not answer."""

    default_detail = "The rate limiter is unavailable; retry later."
    default_code = "rate_limiter_unavailable"


class AtlasRateThrottle(BaseThrottle):
    """One token per request from the client's bucket in ATLAS (see accounts.ratelimit)."""

    def __init__(self) -> None:
        self.retry_after: int | None = None

    def allow_request(self, request: Request, view: Any) -> bool:
        limiter = rate_limiter()
        if limiter is None:
            return True
        user = request.user
        default = rate_limit_settings().default_policy
        if user is not None and user.is_authenticated:
            scope, ident, policy = "user", str(user.pk), user_rate_policy(user=user, default=default)
        else:
            scope, ident, policy = "ip", bucket_identity(request_client_address(request)), default
        try:
            decision = limiter.check(scope, ident, policy)
        except AtlasUnavailable as exc:
            if limiter.unavailable(exc):
                return True
            raise RateLimiterUnavailable() from exc
        attach_decision(request._request, decision)
        if decision.allowed:
            return True
        DENIED.labels(scope).inc()
        self.retry_after = decision.retry_after
        return False

    def wait(self) -> float | None:
        return self.retry_after


class RateLimitFirstMixin:
    """For API views: count the request against the rate limit before permissions are checked and
    before an authentication failure is answered (DRF's own order puts throttles last)."""

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        view: Any = self
        view.format_kwarg = view.get_format_suffix(**kwargs)
        request.accepted_renderer, request.accepted_media_type = view.perform_content_negotiation(request)
        request.version, request.versioning_scheme = view.determine_version(request, *args, **kwargs)
        authentication_error = None
        try:
            view.perform_authentication(request)
        except exceptions.APIException as exc:  # the request is anonymous now; answered after counting
            authentication_error = exc
        view.check_throttles(request)
        if authentication_error is not None:
            raise authentication_error
        view.check_permissions(request)


class LoginUsernameThrottle(SimpleRateThrottle):
    """Counts login attempts per username (case-insensitive), whoever makes them."""

    scope = "login_username"

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        username = request.data.get("username") if isinstance(request.data, dict) else None
        if not isinstance(username, str) or not username:
            return None
        return self.cache_format % {"scope": self.scope, "ident": username.lower()[:150]}


class LoginIPThrottle(SimpleRateThrottle):
    """Counts login attempts per client address (X-Forwarded-For believed from trusted proxies only)."""

    scope = "login_ip"

    def get_ident(self, request: Request) -> str:
        return request_client_address(request)

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}
