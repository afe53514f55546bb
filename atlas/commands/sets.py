"""Set commands. SPOP is propagated as the SREM of the members it chose."""

from __future__ import annotations

import random

from atlas.commands import base
from atlas.commands.base import command, parse_int
from atlas.commands.keys import parse_cursor, parse_scan_options
from atlas.commands.session import Session
from atlas.commands.values import drop_if_empty, get_set
from atlas.protocol import ErrorReply, Set
from atlas.store.glob import compile_glob
from atlas.store.keyspace import SMALL_SCAN


@command("sadd", -3, "write denyoom fast", (1, 1, 1), group="set")
def sadd(s: Session, args: list[bytes]) -> object:
    """Add members to a set; the number added."""
    value = get_set(s.db, args[1])
    if value is None:
        value = set()
        s.db.set(args[1], value)
    before = len(value)
    value.update(args[2:])
    added = len(value) - before
    if added:
        s.store.dirty += 1
    return added


@command("srem", -3, "write fast", (1, 1, 1), group="set")
def srem(s: Session, args: list[bytes]) -> object:
    """Remove members from a set; the number removed."""
    value = get_set(s.db, args[1])
    if value is None:
        return 0
    before = len(value)
    value.difference_update(args[2:])
    removed = before - len(value)
    if removed:
        s.store.dirty += 1
        drop_if_empty(s.db, args[1], value)
    return removed


@command("smembers", 2, "readonly", (1, 1, 1), group="set")
def smembers(s: Session, args: list[bytes]) -> object:
    """Every member of a set."""
    return Set(get_set(s.db, args[1]) or ())


@command("sismember", 3, "readonly fast", (1, 1, 1), group="set")
def sismember(s: Session, args: list[bytes]) -> object:
    """Whether a value is a member of a set."""
    value = get_set(s.db, args[1])
    return int(value is not None and args[2] in value)


@command("smismember", -3, "readonly fast", (1, 1, 1), group="set", since="6.2.0")
def smismember(s: Session, args: list[bytes]) -> object:
    """Whether each value is a member of a set."""
    value = get_set(s.db, args[1]) or set()
    return [int(member in value) for member in args[2:]]


@command("scard", 2, "readonly fast", (1, 1, 1), group="set")
def scard(s: Session, args: list[bytes]) -> object:
    """The number of members of a set."""
    return len(get_set(s.db, args[1]) or ())


@command("spop", -2, "write fast", (1, 1, 1), group="set")
def spop(s: Session, args: list[bytes]) -> object:
    """Remove and return random members."""
    if len(args) > 3:
        raise ErrorReply(base.SYNTAX)
    count = None
    if len(args) == 3:
        count = parse_int(args[2], base.MUST_BE_POSITIVE)
        if count < 0:
            raise ErrorReply(base.MUST_BE_POSITIVE)
    value = get_set(s.db, args[1])
    if value is None:
        return None if count is None else Set([])
    chosen = random.sample(list(value), 1 if count is None else min(count, len(value)))
    if not chosen:
        return Set([])
    value.difference_update(chosen)
    s.store.dirty += 1
    drop_if_empty(s.db, args[1], value)
    s.rewrite([b"SREM", args[1], *chosen])
    return chosen[0] if count is None else Set(chosen)


@command("srandmember", -2, "readonly", (1, 1, 1), group="set")
def srandmember(s: Session, args: list[bytes]) -> object:
    """Random members (distinct for a positive count, repeats allowed for a negative one)."""
    if len(args) > 3:
        raise ErrorReply(base.SYNTAX)
    value = get_set(s.db, args[1])
    if len(args) == 2:
        return None if not value else random.choice(list(value))
    count = parse_int(args[2])
    if not value or count == 0:
        return []
    members = list(value)
    return random.sample(members, min(count, len(members))) if count > 0 else random.choices(members, k=-count)


@command("smove", 4, "write fast", (1, 2, 1), group="set")
def smove(s: Session, args: list[bytes]) -> object:
    """Move a member from one set to another."""
    source = get_set(s.db, args[1])
    target = get_set(s.db, args[2])
    if source is None or args[3] not in source:
        return 0
    if source is target:
        return 1
    source.discard(args[3])
    drop_if_empty(s.db, args[1], source)
    if target is None:
        target = set()
        s.db.set(args[2], target)
    target.add(args[3])
    s.store.dirty += 1
    return 1


def _combine(s: Session, keys: list[bytes], operation: str) -> set[bytes]:
    sets = [get_set(s.db, key) for key in keys]  # WRONGTYPE for any of them, as Redis checks all
    first = sets[0] or set()
    if operation == "inter":
        if any(member is None for member in sets):
            return set()
        ordered = sorted((member for member in sets if member is not None), key=len)
        common = set(ordered[0])
        for other in ordered[1:]:
            common &= other
        return common
    result: set[bytes] = set(first)
    for members in sets[1:]:
        if members:
            if operation == "union":
                result |= members
            else:
                result -= members
    return result


def _store(s: Session, target: bytes, members: set[bytes]) -> int:
    db = s.db
    if members:
        db.set(target, members)
    else:
        db.delete(target)
    return len(members)


@command("sinter", -2, "readonly", (1, -1, 1), group="set")
def sinter(s: Session, args: list[bytes]) -> object:
    """The intersection of sets."""
    return Set(_combine(s, args[1:], "inter"))


@command("sunion", -2, "readonly", (1, -1, 1), group="set")
def sunion(s: Session, args: list[bytes]) -> object:
    """The union of sets."""
    return Set(_combine(s, args[1:], "union"))


@command("sdiff", -2, "readonly", (1, -1, 1), group="set")
def sdiff(s: Session, args: list[bytes]) -> object:
    """The members of the first set that are in none of the others."""
    return Set(_combine(s, args[1:], "diff"))


@command("sinterstore", -3, "write denyoom", (1, -1, 1), group="set")
def sinterstore(s: Session, args: list[bytes]) -> object:
    """Store the intersection of sets."""
    return _store(s, args[1], _combine(s, args[2:], "inter"))


@command("sunionstore", -3, "write denyoom", (1, -1, 1), group="set")
def sunionstore(s: Session, args: list[bytes]) -> object:
    """Store the union of sets."""
    return _store(s, args[1], _combine(s, args[2:], "union"))


@command("sdiffstore", -3, "write denyoom", (1, -1, 1), group="set")
def sdiffstore(s: Session, args: list[bytes]) -> object:
    """Store the difference of sets."""
    return _store(s, args[1], _combine(s, args[2:], "diff"))


@command("sintercard", -3, "readonly", group="set", since="7.0.0")
def sintercard(s: Session, args: list[bytes]) -> object:
    """The size of the intersection of sets, optionally stopping at LIMIT."""
    numkeys = parse_int(args[1])
    if numkeys <= 0:
        raise ErrorReply("ERR numkeys should be greater than 0")
    if numkeys > len(args) - 2:
        raise ErrorReply("ERR Number of keys can't be greater than number of args")
    keys = args[2 : 2 + numkeys]
    rest = args[2 + numkeys :]
    limit = 0
    if rest:
        if len(rest) != 2 or rest[0].lower() != b"limit":
            raise ErrorReply(base.SYNTAX)
        limit = parse_int(rest[1])
        if limit < 0:
            raise ErrorReply("ERR LIMIT can't be negative")
    size = len(_combine(s, keys, "inter"))
    return min(size, limit) if limit else size


@command("sscan", -3, "readonly", (1, 1, 1), group="set", since="2.8.0")
def sscan(s: Session, args: list[bytes]) -> object:
    """Iterate the members of a set with a cursor."""
    cursor = parse_cursor(args[2])
    pattern, count, _ = parse_scan_options(args[3:], allow_type=False)
    value = get_set(s.db, args[1]) or set()
    if len(value) <= max(count, SMALL_SCAN) and cursor == 0:
        next_cursor, page = 0, list(value)
    else:
        next_cursor, page = s.store.scans.page(cursor, count, lambda: list(value))
    matches = compile_glob(pattern) if pattern is not None else None
    found = [member for member in page if member in value and (matches is None or matches(member))]
    return [b"%d" % next_cursor, found]
