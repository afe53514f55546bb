"""The gateway's rate-limit and client-address settings, resolved from helios_site.config."""

from __future__ import annotations

import functools
import ipaddress
from dataclasses import dataclass

from django.conf import settings

from helios_site.config import Config

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class RatePolicy:
    """A token bucket: `capacity` requests at once, refilled by `rate_num` every `rate_den` seconds."""

    capacity: int
    rate_num: int
    rate_den: int

    @property
    def window_seconds(self) -> int:
        """Seconds an empty bucket takes to fill again (the `w` of RateLimit-Policy)."""
        return -(-self.capacity * self.rate_den // self.rate_num)

    def generosity(self) -> tuple[float, int]:
        """Sort key: the higher rate wins, then the larger bucket."""
        return (self.rate_num / self.rate_den, self.capacity)


@dataclass(frozen=True)
class RateLimitSettings:
    """gateway.rate_limit.* plus gateway.trusted_proxies; build it with from_config()."""

    enabled: bool
    default_policy: RatePolicy
    fail_open: bool
    timeout: float
    trusted_proxies: tuple[Network, ...]

    @classmethod
    def from_config(cls, config: Config) -> RateLimitSettings:
        return cls(
            enabled=config.get("gateway.rate_limit.enabled") and bool(config.get("atlas.url")),
            default_policy=RatePolicy(
                capacity=config.get("gateway.rate_limit.default_capacity"),
                rate_num=config.get("gateway.rate_limit.default_rate_num"),
                rate_den=config.get("gateway.rate_limit.default_rate_den"),
            ),
            fail_open=config.get("gateway.rate_limit.fail_mode") == "open",
            timeout=config.get("gateway.rate_limit.timeout"),
            trusted_proxies=tuple(ipaddress.ip_network(net) for net in config.get("gateway.trusted_proxies")),
        )


@functools.cache
def rate_limit_settings() -> RateLimitSettings:
    """Read once per process (tests call rate_limit_settings.cache_clear())."""
    return RateLimitSettings.from_config(settings.CONFIG)
