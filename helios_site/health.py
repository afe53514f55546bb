"""Liveness and readiness probes.

/healthz answers as long as the process serves requests. /readyz also checks what a request needs:
the database, and ATLAS when HELIOS_ATLAS_URL is set; it answers 503 with the failing check otherwise.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET

logger = logging.getLogger(__name__)


def check_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


def check_atlas() -> None:
    from atlas.client import check_atlas as ping_atlas

    ping_atlas()


READINESS_CHECKS: dict[str, Callable[[], None]] = {"database": check_database}
if settings.CONFIG.get("atlas.url"):
    READINESS_CHECKS["atlas"] = check_atlas


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    checks: dict[str, str] = {}
    for name, check in READINESS_CHECKS.items():
        try:
            check()
        except Exception as exc:  # any failure means not ready; the reason goes to the body and the log
            logger.warning("readiness check %s failed: %s", name, exc, extra={"action": "readyz_failed"})
            checks[name] = f"error: {exc.__class__.__name__}"
        else:
            checks[name] = "ok"
    ready = all(result == "ok" for result in checks.values())
    return JsonResponse({"status": "ok" if ready else "unavailable", "checks": checks}, status=200 if ready else 503)
