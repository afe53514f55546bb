"""What the KV API's services and selectors share: the ATLAS client of the KV database, its errors,
and how a stored value becomes text."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import redis
from django.conf import settings

from atlas.client import AtlasClient, ClientOptions
from atlas.conf import kv_settings


class KeyHoldsOtherType(Exception):
    """The key holds a hash, list, set or sorted set: the KV API only reads and writes strings."""


class ValueNotText(Exception):
    """The stored value is not UTF-8 (written by another client), so it cannot be a JSON string."""


@dataclass(frozen=True)
class KVEntry:
    key: str
    value: str
    ttl: int  # seconds left, -1 when the key does not expire


@dataclass(frozen=True)
class KVPage:
    keys: list[str]
    cursor: int  # the cursor of the next page; 0 when the iteration is complete


@functools.cache
def kv_client() -> AtlasClient:
    """The process's client of the KV database (gateway.kv.database)."""
    return AtlasClient.shared(ClientOptions.from_config(settings.CONFIG, db=kv_settings().database))


def raise_wrong_type(error: redis.exceptions.ResponseError) -> None:
    """Turn WRONGTYPE into KeyHoldsOtherType; other error replies go on as they are."""
    if "WRONGTYPE" in str(error):
        raise KeyHoldsOtherType(str(error)) from error


def as_text(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueNotText() from None
