"""Hash commands."""

from __future__ import annotations

import random

from atlas.commands import base
from atlas.commands.base import INT64_MAX, INT64_MIN, command, parse_int
from atlas.commands.keys import parse_cursor, parse_scan_options
from atlas.commands.session import Session
from atlas.commands.strings import add_float
from atlas.commands.values import drop_if_empty, get_hash
from atlas.protocol import OK, ErrorReply, Map
from atlas.store.glob import compile_glob
from atlas.store.keyspace import SMALL_SCAN


def _hash_for_write(s: Session, key: bytes) -> dict[bytes, bytes]:
    value = get_hash(s.db, key)
    if value is None:
        value = {}
        s.db.set(key, value)
    return value


@command("hset", -4, "write denyoom fast", (1, 1, 1), group="hash")
def hset(s: Session, args: list[bytes]) -> object:
    """Set hash fields; the number of new fields."""
    if len(args) % 2:
        raise ErrorReply(base.wrong_arity("hset"))
    value = _hash_for_write(s, args[1])
    before = len(value)
    for position in range(2, len(args), 2):
        value[args[position]] = args[position + 1]
    s.store.dirty += 1
    return len(value) - before


@command("hmset", -4, "write denyoom fast", (1, 1, 1), group="hash")
def hmset(s: Session, args: list[bytes]) -> object:
    """Set hash fields (deprecated form of HSET)."""
    if len(args) % 2:
        raise ErrorReply(base.wrong_arity("hmset"))
    hset(s, args)
    return OK


@command("hsetnx", 4, "write denyoom fast", (1, 1, 1), group="hash")
def hsetnx(s: Session, args: list[bytes]) -> object:
    """Set a hash field only if it does not exist."""
    current = get_hash(s.db, args[1])
    if current is not None and args[2] in current:
        return 0
    _hash_for_write(s, args[1])[args[2]] = args[3]
    s.store.dirty += 1
    return 1


@command("hget", 3, "readonly fast", (1, 1, 1), group="hash")
def hget(s: Session, args: list[bytes]) -> object:
    """The value of a hash field."""
    value = get_hash(s.db, args[1])
    return None if value is None else value.get(args[2])


@command("hmget", -3, "readonly fast", (1, 1, 1), group="hash")
def hmget(s: Session, args: list[bytes]) -> object:
    """The values of several hash fields."""
    value = get_hash(s.db, args[1]) or {}
    return [value.get(field) for field in args[2:]]


@command("hdel", -3, "write fast", (1, 1, 1), group="hash")
def hdel(s: Session, args: list[bytes]) -> object:
    """Delete hash fields; the number deleted."""
    value = get_hash(s.db, args[1])
    if value is None:
        return 0
    removed = 0
    for field in args[2:]:
        if value.pop(field, None) is not None:
            removed += 1
    if removed:
        s.store.dirty += 1
        drop_if_empty(s.db, args[1], value)
    return removed


@command("hexists", 3, "readonly fast", (1, 1, 1), group="hash")
def hexists(s: Session, args: list[bytes]) -> object:
    """Whether a hash field exists."""
    value = get_hash(s.db, args[1])
    return int(value is not None and args[2] in value)


@command("hlen", 2, "readonly fast", (1, 1, 1), group="hash")
def hlen(s: Session, args: list[bytes]) -> object:
    """The number of fields of a hash."""
    return len(get_hash(s.db, args[1]) or ())


@command("hkeys", 2, "readonly", (1, 1, 1), group="hash")
def hkeys(s: Session, args: list[bytes]) -> object:
    """The fields of a hash."""
    return list(get_hash(s.db, args[1]) or ())


@command("hvals", 2, "readonly", (1, 1, 1), group="hash")
def hvals(s: Session, args: list[bytes]) -> object:
    """The values of a hash."""
    return list((get_hash(s.db, args[1]) or {}).values())


@command("hgetall", 2, "readonly", (1, 1, 1), group="hash")
def hgetall(s: Session, args: list[bytes]) -> object:
    """Every field and value of a hash."""
    return Map(list((get_hash(s.db, args[1]) or {}).items()))


@command("hincrby", 4, "write denyoom fast", (1, 1, 1), group="hash")
def hincrby(s: Session, args: list[bytes]) -> object:
    """Increment the integer value of a hash field."""
    delta = parse_int(args[3])
    current = get_hash(s.db, args[1])
    old = current.get(args[2]) if current is not None else None
    number = 0 if old is None else parse_int(old, base.HASH_NOT_INTEGER)
    result = number + delta
    if not INT64_MIN <= result <= INT64_MAX:
        raise ErrorReply(base.OVERFLOW)
    _hash_for_write(s, args[1])[args[2]] = b"%d" % result
    s.store.dirty += 1
    return result


@command("hincrbyfloat", 4, "write denyoom fast", (1, 1, 1), group="hash")
def hincrbyfloat(s: Session, args: list[bytes]) -> object:
    """Increment the float value of a hash field (propagated as the HSET of its result)."""
    current = get_hash(s.db, args[1])
    old = current.get(args[2]) if current is not None else None
    result = add_float(old, args[3], base.HASH_NOT_FLOAT)
    _hash_for_write(s, args[1])[args[2]] = result
    s.store.dirty += 1
    s.rewrite([b"HSET", args[1], args[2], result])
    return result


@command("hstrlen", 3, "readonly fast", (1, 1, 1), group="hash", since="3.2.0")
def hstrlen(s: Session, args: list[bytes]) -> object:
    """The length of a hash field's value."""
    value = get_hash(s.db, args[1]) or {}
    return len(value.get(args[2], b""))


@command("hscan", -3, "readonly", (1, 1, 1), group="hash", since="2.8.0")
def hscan(s: Session, args: list[bytes]) -> object:
    """Iterate the fields of a hash with a cursor."""
    cursor = parse_cursor(args[2])
    pattern, count, _ = parse_scan_options(args[3:], allow_type=False)
    value = get_hash(s.db, args[1]) or {}
    if len(value) <= max(count, SMALL_SCAN) and cursor == 0:
        next_cursor, page = 0, list(value)
    else:
        next_cursor, page = s.store.scans.page(cursor, count, lambda: list(value))
    matches = compile_glob(pattern) if pattern is not None else None
    out: list[bytes] = []
    for field in page:
        if field in value and (matches is None or matches(field)):
            out += (field, value[field])
    return [b"%d" % next_cursor, out]


@command("hrandfield", -2, "readonly", (1, 1, 1), group="hash", since="6.2.0")
def hrandfield(s: Session, args: list[bytes]) -> object:
    """Random fields of a hash (distinct for a positive count, repeats allowed for a negative one)."""
    value = get_hash(s.db, args[1])
    if len(args) == 2:
        return None if value is None else random.choice(list(value))
    count = parse_int(args[2])
    with_values = False
    if len(args) == 4:
        if args[3].lower() != b"withvalues":
            raise ErrorReply(base.SYNTAX)
        with_values = True
    elif len(args) > 4:
        raise ErrorReply(base.SYNTAX)
    if value is None or count == 0:
        return []
    fields = list(value)
    chosen = random.sample(fields, min(count, len(fields))) if count > 0 else random.choices(fields, k=-count)
    if not with_values:
        return chosen
    if s.resp3:
        return [[field, value[field]] for field in chosen]
    return [item for field in chosen for item in (field, value[field])]
