"""Reads of the KV API: one key with its TTL, and a page of keys."""

from __future__ import annotations

import re
from collections.abc import Callable

import redis

from atlas.kv import KVEntry, KVPage, as_text, kv_client, raise_wrong_type

_GLOB_SPECIAL = re.compile(r"([*?\[\]\\])")


def glob_escape(text: str) -> str:
    """`text` as a Redis glob that matches exactly itself."""
    return _GLOB_SPECIAL.sub(r"\\\1", text)


def kv_get(*, key: str) -> KVEntry | None:
    """The value and TTL of `key` (read together, in one transaction), or None when it is absent.

    Raises KeyHoldsOtherType, ValueNotText, or AtlasUnavailable."""

    def read(node: redis.Redis) -> tuple[bytes | None, int]:
        with node.pipeline(transaction=True) as pipe:
            pipe.get(key)
            pipe.ttl(key)
            value, ttl = pipe.execute()
        return value, int(ttl)

    try:
        value, ttl = kv_client().call(read)
    except redis.exceptions.ResponseError as exc:
        raise_wrong_type(exc)
        raise
    if value is None:
        return None
    return KVEntry(key=key, value=as_text(value), ttl=ttl)


def kv_list(*, prefix: str, cursor: int, count: int, readable: Callable[[str], bool]) -> KVPage:
    """One SCAN step over the keys starting with `prefix`, keeping those `readable` accepts.

    As with SCAN, a page may hold fewer keys than `count`, even none, before the iteration ends;
    keys that are not UTF-8 are left out (the API cannot name them). Raises AtlasUnavailable."""
    match = glob_escape(prefix) + "*"
    next_cursor, raw_keys = kv_client().call(lambda node: node.scan(cursor=cursor, match=match, count=count))
    keys = []
    for raw in raw_keys:
        try:
            key = raw if isinstance(raw, str) else raw.decode("utf-8")
        except UnicodeDecodeError:
            continue
        if readable(key):
            keys.append(key)
    return KVPage(keys=keys, cursor=int(next_cursor))
