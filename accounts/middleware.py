"""Adds the rate limit headers to every response whose request the rate limiter counted."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse

from helios_site.middleware import _DualMiddleware


class RateLimitHeadersMiddleware(_DualMiddleware):
    """RateLimit-Policy, RateLimit and X-RateLimit-* from the decision AtlasRateThrottle attached."""

    def before(self, request: HttpRequest) -> Any:
        return None

    def after(self, request: HttpRequest, response: HttpResponse, before: Any) -> HttpResponse:
        decision = getattr(request, "rate_limit", None)
        if decision is not None:
            for name, value in decision.headers().items():
                response[name] = value
        return response
