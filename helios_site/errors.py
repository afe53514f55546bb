"""API exceptions any app may raise. Kept apart from helios_site.api, which imports DRF's views: the
throttle classes DRF's views load from settings must be able to import this without a cycle."""

from __future__ import annotations

from rest_framework import exceptions, status


class ServiceUnavailable(exceptions.APIException):
    """503 with Retry-After (DRF's exception handler turns `wait` into the header)."""

    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = "A service this request needs is unavailable; retry later."
    default_code = "service_unavailable"
    wait = 1
