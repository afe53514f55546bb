"""How Django code reaches ATLAS: a pooled redis-py client (hiredis parser) from HELIOS_ATLAS_URL.

    from atlas.client import atlas_client
    atlas_client().set("greeting", "hello")

One client (one connection pool) per process and URL. Calls time out after
atlas.socket_timeout; failures raise redis.exceptions.ConnectionError or TimeoutError, which the
callers turn into 503s or fail-open decisions.
"""

from __future__ import annotations

import functools

import redis
from django.conf import settings


class AtlasNotConfigured(Exception):
    """HELIOS_ATLAS_URL (atlas.url) is not set."""


@functools.cache
def _client_for(url: str, socket_timeout: float) -> redis.Redis:
    return redis.Redis.from_url(
        url,
        socket_timeout=socket_timeout,
        socket_connect_timeout=socket_timeout,
        health_check_interval=30,
        protocol=3,
    )


def atlas_url() -> str | None:
    url: str | None = settings.CONFIG.get("atlas.url")
    return url


def atlas_client() -> redis.Redis:
    """The process's ATLAS client. Raises AtlasNotConfigured without an ATLAS URL."""
    url = atlas_url()
    if not url:
        raise AtlasNotConfigured("set HELIOS_ATLAS_URL (atlas.url), e.g. redis://127.0.0.1:6380/0")
    return _client_for(url, settings.CONFIG.get("atlas.socket_timeout"))


READINESS_TIMEOUT_SECONDS = 1.0


def check_atlas() -> None:
    """Readiness: ATLAS answers PING within a second, on a connection of its own (raises otherwise)."""
    url = atlas_url()
    if not url:
        raise AtlasNotConfigured("HELIOS_ATLAS_URL is not set")
    probe = redis.Redis.from_url(
        url, socket_timeout=READINESS_TIMEOUT_SECONDS, socket_connect_timeout=READINESS_TIMEOUT_SECONDS
    )
    try:
        if not probe.ping():
            raise ConnectionError("ATLAS did not answer PING")
    finally:
        probe.close()
