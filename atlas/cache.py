"""Django's Redis cache backend pointed at ATLAS, failing open.

A cache that is down must not take the site with it: a read that fails is a miss and a write
that fails is dropped, each logged and counted (atlas_cache_errors_total), as Django's memcached
backends behave. Everything else is django.core.cache.backends.redis.RedisCache unchanged.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

from django.core.cache.backends.redis import RedisCache
from prometheus_client import Counter
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

logger = logging.getLogger(__name__)

CACHE_ERRORS = Counter("atlas_cache_errors", "Cache calls that failed because ATLAS did not answer.", ["operation"])
_FAILURES = (RedisConnectionError, RedisTimeoutError, OSError)


def _fail_open(default: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def wrap(method: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(method)
        def call(self: AtlasCache, *args: Any, **kwargs: Any) -> Any:
            try:
                return method(self, *args, **kwargs)
            except _FAILURES as exc:
                CACHE_ERRORS.labels(method.__name__).inc()
                logger.warning("cache %s failed: %s", method.__name__, exc, extra={"action": "cache_unavailable"})
                if method.__name__ == "get":  # get(key, default=None, version=None)
                    return args[1] if len(args) > 1 else kwargs.get("default")
                return default

        return call

    return wrap


class AtlasCache(RedisCache):
    """RedisCache that degrades to a miss when ATLAS is unreachable."""

    get = _fail_open(None)(RedisCache.get)
    get_many = _fail_open({})(RedisCache.get_many)
    set = _fail_open(None)(RedisCache.set)
    add = _fail_open(False)(RedisCache.add)
    set_many = _fail_open([])(RedisCache.set_many)
    delete = _fail_open(False)(RedisCache.delete)
    delete_many = _fail_open(None)(RedisCache.delete_many)
    touch = _fail_open(False)(RedisCache.touch)
    has_key = _fail_open(False)(RedisCache.has_key)
