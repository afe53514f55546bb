"""List commands, the blocking ones included.

A blocking command that finds its lists empty returns `Blocked`; the server parks the client
and calls the attempt again when one of the keys is written. What a served blocking pop did is
propagated as the plain command (LPOP, RPOP, LMOVE), as Redis does.
"""

from __future__ import annotations

from collections import deque
from itertools import islice

from atlas.commands import base
from atlas.commands.base import command, parse_int, parse_timeout
from atlas.commands.session import NOT_READY, Blocked, Session
from atlas.commands.values import drop_if_empty, get_list
from atlas.protocol import NULL_ARRAY, OK, ErrorReply


def _push(s: Session, args: list[bytes], left: bool, only_existing: bool) -> int:
    key = args[1]
    value = get_list(s.db, key)
    if value is None:
        if only_existing:
            return 0
        value = deque()
        s.db.set(key, value)
    if left:
        value.extendleft(args[2:])
    else:
        value.extend(args[2:])
    s.store.dirty += 1
    return len(value)


@command("lpush", -3, "write denyoom fast", (1, 1, 1), group="list")
def lpush(s: Session, args: list[bytes]) -> object:
    """Prepend elements to a list."""
    return _push(s, args, left=True, only_existing=False)


@command("rpush", -3, "write denyoom fast", (1, 1, 1), group="list")
def rpush(s: Session, args: list[bytes]) -> object:
    """Append elements to a list."""
    return _push(s, args, left=False, only_existing=False)


@command("lpushx", -3, "write denyoom fast", (1, 1, 1), group="list", since="2.2.0")
def lpushx(s: Session, args: list[bytes]) -> object:
    """Prepend elements to an existing list."""
    return _push(s, args, left=True, only_existing=True)


@command("rpushx", -3, "write denyoom fast", (1, 1, 1), group="list", since="2.2.0")
def rpushx(s: Session, args: list[bytes]) -> object:
    """Append elements to an existing list."""
    return _push(s, args, left=False, only_existing=True)


def _pop(s: Session, args: list[bytes], left: bool) -> object:
    if len(args) > 3:
        raise ErrorReply(base.SYNTAX)
    count = None
    if len(args) == 3:
        count = parse_int(args[2], base.MUST_BE_POSITIVE)
        if count < 0:
            raise ErrorReply(base.MUST_BE_POSITIVE)
    value = get_list(s.db, args[1])
    if value is None:
        return None if count is None else NULL_ARRAY
    take = value.popleft if left else value.pop
    if count is None:
        popped: object = take()
    else:
        popped = [take() for _ in range(min(count, len(value)))]
    s.store.dirty += 1
    drop_if_empty(s.db, args[1], value)
    return popped


@command("lpop", -2, "write fast", (1, 1, 1), group="list")
def lpop(s: Session, args: list[bytes]) -> object:
    """Remove and return the first elements of a list."""
    return _pop(s, args, left=True)


@command("rpop", -2, "write fast", (1, 1, 1), group="list")
def rpop(s: Session, args: list[bytes]) -> object:
    """Remove and return the last elements of a list."""
    return _pop(s, args, left=False)


@command("llen", 2, "readonly fast", (1, 1, 1), group="list")
def llen(s: Session, args: list[bytes]) -> object:
    """The length of a list."""
    return len(get_list(s.db, args[1]) or ())


def _normalize(start: int, stop: int, length: int) -> tuple[int, int] | None:
    """Inclusive, possibly negative indexes to a clamped [start, stop]; None when empty."""
    if start < 0:
        start = max(length + start, 0)
    if stop < 0:
        stop = length + stop
    stop = min(stop, length - 1)
    if start > stop or start >= length:
        return None
    return start, stop


@command("lrange", 4, "readonly", (1, 1, 1), group="list")
def lrange(s: Session, args: list[bytes]) -> object:
    """A range of elements of a list."""
    start, stop = parse_int(args[2]), parse_int(args[3])
    value = get_list(s.db, args[1])
    if value is None:
        return []
    bounds = _normalize(start, stop, len(value))
    if bounds is None:
        return []
    return list(islice(value, bounds[0], bounds[1] + 1))


@command("lindex", 3, "readonly", (1, 1, 1), group="list")
def lindex(s: Session, args: list[bytes]) -> object:
    """The element at an index."""
    index = parse_int(args[2])
    value = get_list(s.db, args[1])
    if value is None or not -len(value) <= index < len(value):
        return None
    return value[index]


@command("lset", 4, "write denyoom", (1, 1, 1), group="list")
def lset(s: Session, args: list[bytes]) -> object:
    """Set the element at an index."""
    index = parse_int(args[2])
    value = get_list(s.db, args[1])
    if value is None:
        raise ErrorReply(base.NO_SUCH_KEY)
    if not -len(value) <= index < len(value):
        raise ErrorReply(base.INDEX_OUT_OF_RANGE)
    value[index] = args[3]
    s.store.dirty += 1
    return OK


@command("lrem", 4, "write", (1, 1, 1), group="list")
def lrem(s: Session, args: list[bytes]) -> object:
    """Remove occurrences of an element (count > 0 from the head, < 0 from the tail, 0 all)."""
    count = parse_int(args[2])
    element = args[3]
    value = get_list(s.db, args[1])
    if value is None:
        return 0
    items = list(value) if count >= 0 else list(reversed(value))
    limit = abs(count) or len(items)
    kept = []
    removed = 0
    for item in items:
        if removed < limit and item == element:
            removed += 1
        else:
            kept.append(item)
    if removed:
        value.clear()
        value.extend(kept if count >= 0 else reversed(kept))
        s.store.dirty += 1
        drop_if_empty(s.db, args[1], value)
    return removed


@command("ltrim", 4, "write", (1, 1, 1), group="list")
def ltrim(s: Session, args: list[bytes]) -> object:
    """Keep only a range of a list."""
    start, stop = parse_int(args[2]), parse_int(args[3])
    value = get_list(s.db, args[1])
    if value is None:
        return OK
    bounds = _normalize(start, stop, len(value))
    kept = [] if bounds is None else list(islice(value, bounds[0], bounds[1] + 1))
    if len(kept) != len(value):
        value.clear()
        value.extend(kept)
        s.store.dirty += 1
        drop_if_empty(s.db, args[1], value)
    return OK


@command("linsert", 5, "write denyoom", (1, 1, 1), group="list", since="2.2.0")
def linsert(s: Session, args: list[bytes]) -> object:
    """Insert an element before or after a pivot; the new length, -1 without the pivot."""
    where = args[2].lower()
    if where not in (b"before", b"after"):
        raise ErrorReply(base.SYNTAX)
    value = get_list(s.db, args[1])
    if value is None:
        return 0
    try:
        index = value.index(args[3])
    except ValueError:
        return -1
    value.insert(index if where == b"before" else index + 1, args[4])
    s.store.dirty += 1
    return len(value)


@command("lpos", -3, "readonly", (1, 1, 1), group="list", since="6.0.6")
def lpos(s: Session, args: list[bytes]) -> object:
    """Positions of an element in a list."""
    rank, count, maxlen = 1, None, 0
    position = 3
    while position < len(args):
        option = args[position].lower()
        if position + 1 >= len(args):
            raise ErrorReply(base.SYNTAX)
        number = parse_int(args[position + 1])
        if option == b"rank":
            if number == 0:
                raise ErrorReply(
                    "ERR RANK can't be zero: use 1 to start from the first match, 2 from the second ... "
                    "or use negative to start from the end of the list"
                )
            if number == base.INT64_MIN:
                raise ErrorReply("ERR value is out of range")
            rank = number
        elif option == b"count":
            if number < 0:
                raise ErrorReply("ERR COUNT can't be negative")
            count = number
        elif option == b"maxlen":
            if number < 0:
                raise ErrorReply("ERR MAXLEN can't be negative")
            maxlen = number
        else:
            raise ErrorReply(base.SYNTAX)
        position += 2
    value = get_list(s.db, args[1])
    if value is None:
        return None if count is None else []
    length = len(value)
    indexes = range(length) if rank > 0 else range(length - 1, -1, -1)
    skip = abs(rank) - 1
    found: list[int] = []
    for checked, index in enumerate(indexes):
        if maxlen and checked >= maxlen:
            break
        if value[index] == args[2]:
            if skip:
                skip -= 1
                continue
            found.append(index)
            if count is None or (count and len(found) >= count):
                break
    if count is None:
        return found[0] if found else None
    return found


def _side(raw: bytes) -> bool:
    side = raw.lower()
    if side not in (b"left", b"right"):
        raise ErrorReply(base.SYNTAX)
    return side == b"left"


def _move(s: Session, source: bytes, target: bytes, from_left: bool, to_left: bool) -> bytes | None:
    value = get_list(s.db, source)
    if value is None:
        return None
    destination = get_list(s.db, target)  # WRONGTYPE before anything moves
    element = value.popleft() if from_left else value.pop()
    s.store.dirty += 1
    if destination is None:
        destination = deque()
        s.db.set(target, destination)
    if to_left:
        destination.appendleft(element)
    else:
        destination.append(element)
    if value is not destination:
        drop_if_empty(s.db, source, value)
    return element


@command("lmove", 5, "write denyoom", (1, 2, 1), group="list", since="6.2.0")
def lmove(s: Session, args: list[bytes]) -> object:
    """Pop from one list and push to another."""
    return _move(s, args[1], args[2], _side(args[3]), _side(args[4]))


@command("rpoplpush", 3, "write denyoom", (1, 2, 1), group="list", since="1.2.0")
def rpoplpush(s: Session, args: list[bytes]) -> object:
    """Pop the tail of one list and push it to the head of another."""
    return _move(s, args[1], args[2], from_left=False, to_left=True)


# -- blocking -----------------------------------------------------------------------------------


def _blocking_pop(s: Session, args: list[bytes], left: bool) -> object:
    timeout = parse_timeout(args[-1])
    keys = args[1:-1]
    name = b"LPOP" if left else b"RPOP"

    def attempt() -> object:
        for key in keys:
            value = get_list(s.db, key)
            if value:
                element = value.popleft() if left else value.pop()
                s.store.dirty += 1
                drop_if_empty(s.db, key, value)
                s.rewrite([name, key])
                return [key, element]
        return NOT_READY

    reply = attempt()
    if reply is not NOT_READY:
        return reply
    if s.in_exec:
        return NULL_ARRAY
    return Blocked(keys, timeout, attempt, NULL_ARRAY)


@command("blpop", -3, "write blocking", (1, -2, 1), group="list")
def blpop(s: Session, args: list[bytes]) -> object:
    """Pop the first element of the first non-empty list, waiting up to a timeout."""
    return _blocking_pop(s, args, left=True)


@command("brpop", -3, "write blocking", (1, -2, 1), group="list")
def brpop(s: Session, args: list[bytes]) -> object:
    """Pop the last element of the first non-empty list, waiting up to a timeout."""
    return _blocking_pop(s, args, left=False)


def _blocking_move(
    s: Session, source: bytes, target: bytes, from_left: bool, to_left: bool, raw_timeout: bytes
) -> object:
    timeout = parse_timeout(raw_timeout)
    sides = (b"LEFT" if from_left else b"RIGHT", b"LEFT" if to_left else b"RIGHT")

    def attempt() -> object:
        element = _move(s, source, target, from_left, to_left)
        if element is None:
            return NOT_READY
        s.rewrite([b"LMOVE", source, target, *sides])
        return element

    reply = attempt()
    if reply is not NOT_READY:
        return reply
    if s.in_exec:
        return None
    return Blocked([source], timeout, attempt, None)


@command("blmove", 6, "write denyoom blocking", (1, 2, 1), group="list", since="6.2.0")
def blmove(s: Session, args: list[bytes]) -> object:
    """LMOVE, waiting up to a timeout for the source to have an element."""
    return _blocking_move(s, args[1], args[2], _side(args[3]), _side(args[4]), args[5])


@command("brpoplpush", 4, "write denyoom blocking", (1, 2, 1), group="list", since="2.2.0")
def brpoplpush(s: Session, args: list[bytes]) -> object:
    """RPOPLPUSH, waiting up to a timeout."""
    return _blocking_move(s, args[1], args[2], False, True, args[3])
