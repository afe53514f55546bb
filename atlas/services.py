"""Writes of the KV API: set (create or replace) and delete."""

from __future__ import annotations

import redis

from atlas.kv import kv_client


def kv_set(*, key: str, value: str, ttl: int | None) -> bool:
    """Store `value` under `key`, expiring after `ttl` seconds (never when None: a TTL the key had is
    dropped, as SET does). True when the key was created, False when it replaced a value of any
    type. Raises AtlasUnavailable."""

    def write(node: redis.Redis) -> bool:
        with node.pipeline(transaction=True) as pipe:
            pipe.exists(key)
            pipe.set(key, value.encode("utf-8"), ex=ttl)
            existed, _ = pipe.execute()
        return not existed

    return kv_client().call(write)


def kv_delete(*, key: str) -> bool:
    """Delete `key`; True when it existed. Raises AtlasUnavailable."""
    return bool(kv_client().call(lambda node: node.delete(key)))
