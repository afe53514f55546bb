"""The gateway's rate limiter: one token bucket per client, kept in ATLAS (CL.THROTTLE, GCRA).

Because the bucket lives in ATLAS, every gunicorn worker and every gateway instance draws from the
same one. A client is the authenticated user (`user:<id>`), else the client address (`ip:<addr>`,
IPv6 by its /64, since one host commonly holds a whole /64). The bucket's policy is
gateway.rate_limit.default_* or the most generous override among the user's roles.

What a response says (draft-ietf-httpapi-ratelimit-headers, plus the common X- headers):

    RateLimit-Policy: "user";q=100;w=5      q: bucket size, w: seconds to refill it from empty
    RateLimit: "user";r=99;t=1              r: requests left now, t: seconds until the bucket is full
    X-RateLimit-Limit: 100
    X-RateLimit-Remaining: 99
    X-RateLimit-Reset: 1                    seconds, like t

When ATLAS cannot be reached the limiter fails open (the request goes on, without these headers) or
closed (503), as gateway.rate_limit.fail_mode says; either way it is logged and counted.
"""

from __future__ import annotations

import dataclasses
import functools
import ipaddress
import logging
import time
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from prometheus_client import Counter

from accounts.conf import RateLimitSettings, RatePolicy, rate_limit_settings
from atlas.client import AtlasClient, AtlasUnavailable, ClientOptions

logger = logging.getLogger(__name__)

KEY_PREFIX = "helios:ratelimit:"
UNAVAILABLE_LOG_INTERVAL_SECONDS = 10.0

DENIED = Counter("rate_limiter_denied", "Requests refused with 429 by the rate limiter.", ["scope"])
UNAVAILABLE = Counter(
    "rate_limiter_unavailable",
    "Requests the rate limiter could not count because ATLAS did not answer, by what happened to them.",
    ["mode"],
)


@dataclass(frozen=True)
class Decision:
    """CL.THROTTLE's answer for one request."""

    allowed: bool
    scope: str
    policy: RatePolicy
    remaining: int
    retry_after: int
    reset_after: int

    def headers(self) -> dict[str, str]:
        name = f'"{self.scope}"'
        return {
            "RateLimit-Policy": f"{name};q={self.policy.capacity};w={self.policy.window_seconds}",
            "RateLimit": f"{name};r={self.remaining};t={self.reset_after}",
            "X-RateLimit-Limit": str(self.policy.capacity),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(self.reset_after),
        }


def bucket_identity(address: str) -> str:
    """The bucket of a client address: itself for IPv4, its /64 for IPv6."""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(parsed, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((parsed, 64), strict=False))
    return str(parsed)


class RateLimiter:
    """Counts requests against buckets in ATLAS."""

    def __init__(self, client: AtlasClient, config: RateLimitSettings) -> None:
        self.client = client
        self.config = config
        self._last_unavailable_log = 0.0

    def check(self, scope: str, ident: str, policy: RatePolicy) -> Decision:
        """Take one token from the bucket `scope:ident`. Raises AtlasUnavailable."""
        key = f"{KEY_PREFIX}{scope}:{ident}"
        reply = self.client.call(
            lambda node: node.execute_command(  # type: ignore[no-untyped-call]
                "CL.THROTTLE", key, policy.capacity - 1, policy.rate_num, policy.rate_den, 1
            )
        )
        limited, _limit, remaining, retry_after, reset_after = (int(value) for value in reply)
        return Decision(
            allowed=not limited,
            scope=scope,
            policy=policy,
            remaining=remaining,
            retry_after=max(retry_after, 1) if limited else 0,
            reset_after=reset_after,
        )

    def unavailable(self, error: AtlasUnavailable) -> bool:
        """Count and log (at most every UNAVAILABLE_LOG_INTERVAL_SECONDS) a request the limiter could
        not count; True when it may go on (fail open)."""
        mode = "open" if self.config.fail_open else "closed"
        UNAVAILABLE.labels(mode).inc()
        now = time.monotonic()
        if now - self._last_unavailable_log >= UNAVAILABLE_LOG_INTERVAL_SECONDS:
            self._last_unavailable_log = now
            logger.warning(
                "rate limiter cannot reach ATLAS, failing %s: %s",
                mode,
                error,
                extra={"action": "rate_limiter_unavailable", "mode": mode, "reason": error.reason},
            )
        return self.config.fail_open


@functools.cache
def rate_limiter() -> RateLimiter | None:
    """The process's limiter, or None when rate limiting is off (no atlas.url, or disabled)."""
    config = rate_limit_settings()
    if not config.enabled:
        return None
    base = ClientOptions.from_config(settings.CONFIG, socket_timeout=config.timeout)
    options = dataclasses.replace(base, connect_timeout=min(base.connect_timeout, config.timeout))
    return RateLimiter(AtlasClient.shared(options), config)


def attach_decision(request: Any, decision: Decision) -> None:
    """Remember the decision on the Django request, for RateLimitHeadersMiddleware."""
    request.rate_limit = decision
