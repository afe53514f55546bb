"""Typed access to keyspace values for command handlers: WRONGTYPE raised in one place."""

from __future__ import annotations

from collections import deque

from atlas.commands.base import WRONGTYPE
from atlas.protocol import ErrorReply
from atlas.store.keyspace import Database
from atlas.store.types import ZSet


def get_string(db: Database, key: bytes) -> bytes | None:
    value = db.lookup(key)
    if value is None or type(value) is bytes:
        return value
    raise ErrorReply(WRONGTYPE)


def get_hash(db: Database, key: bytes) -> dict[bytes, bytes] | None:
    value = db.lookup(key)
    if value is None or type(value) is dict:
        return value
    raise ErrorReply(WRONGTYPE)


def get_list(db: Database, key: bytes) -> deque[bytes] | None:
    value = db.lookup(key)
    if value is None or type(value) is deque:
        return value
    raise ErrorReply(WRONGTYPE)


def get_set(db: Database, key: bytes) -> set[bytes] | None:
    value = db.lookup(key)
    if value is None or type(value) is set:
        return value
    raise ErrorReply(WRONGTYPE)


def get_zset(db: Database, key: bytes) -> ZSet | None:
    value = db.lookup(key)
    if value is None or type(value) is ZSet:
        return value
    raise ErrorReply(WRONGTYPE)


def drop_if_empty(db: Database, key: bytes, container: object) -> None:
    """Redis never keeps an empty aggregate: delete the key when its container emptied."""
    if not container:
        db.delete(key)
