"""Sorted set commands."""

from __future__ import annotations

import math
from typing import Any

from atlas.commands import base
from atlas.commands.base import (
    command,
    parse_float,
    parse_int,
    parse_lex_bound,
    parse_score_bound,
    parse_timeout,
)
from atlas.commands.keys import parse_cursor, parse_scan_options
from atlas.commands.session import NOT_READY, Blocked, Session
from atlas.commands.values import drop_if_empty, get_zset
from atlas.protocol import NULL_ARRAY, Double, ErrorReply, format_double
from atlas.store.glob import compile_glob
from atlas.store.keyspace import SMALL_SCAN
from atlas.store.types import ZSet


def _with_scores(s: Session, items: list[tuple[float, bytes]]) -> list[Any]:
    """Members and scores: a flat list in RESP2, [member, score] pairs in RESP3."""
    if s.resp3:
        return [[member, Double(score)] for score, member in items]
    return [value for score, member in items for value in (member, Double(score))]


@command("zadd", -4, "write denyoom fast", (1, 1, 1), group="sorted-set", since="1.2.0")
def zadd(s: Session, args: list[bytes]) -> object:  # noqa: PLR0915 - Redis's option grammar in one place
    """Add members with scores, or update their scores."""
    position = 2
    options: set[bytes] = set()
    while position < len(args):
        option = args[position].lower()
        if option not in (b"nx", b"xx", b"gt", b"lt", b"ch", b"incr"):
            break
        options.add(option)
        position += 1
    pairs = args[position:]
    if not pairs or len(pairs) % 2:
        raise ErrorReply(base.SYNTAX)
    if {b"nx", b"xx"} <= options:
        raise ErrorReply("ERR XX and NX options at the same time are not compatible")
    if (b"gt" in options) + (b"lt" in options) + (b"nx" in options) > 1:
        raise ErrorReply("ERR GT, LT, and/or NX options at the same time are not compatible")
    incr = b"incr" in options
    if incr and len(pairs) != 2:
        raise ErrorReply("ERR INCR option supports a single increment-element pair")
    scores = [parse_float(pairs[index]) for index in range(0, len(pairs), 2)]
    members = pairs[1::2]
    zset = get_zset(s.db, args[1])
    if zset is None:
        if b"xx" in options:
            return None if incr else 0
        zset = ZSet()
        s.db.set(args[1], zset)
    added = changed = 0
    result: float | None = None
    for given, member in zip(scores, members, strict=True):
        score = given
        current = zset.scores.get(member)
        if current is None:
            if b"xx" in options:
                continue
        elif b"nx" in options:
            continue
        if incr and current is not None:
            score = current + score
            if math.isnan(score):
                raise ErrorReply(base.NAN_RESULT)
        if current is not None and ((b"gt" in options and score <= current) or (b"lt" in options and score >= current)):
            continue
        result = score
        if current is None:
            zset.add(member, score)
            added += 1
        elif current != score:
            zset.add(member, score)
            changed += 1
    if added or changed:
        s.store.dirty += 1
    drop_if_empty(s.db, args[1], zset)
    if incr:
        if result is None:
            return None
        s.rewrite([b"ZADD", args[1], format_double(result), members[0]])
        return Double(result)
    return added + changed if b"ch" in options else added


@command("zincrby", 4, "write denyoom fast", (1, 1, 1), group="sorted-set", since="1.2.0")
def zincrby(s: Session, args: list[bytes]) -> object:
    """Increment a member's score (propagated as the ZADD of the result)."""
    delta = parse_float(args[2])
    zset = get_zset(s.db, args[1])
    current = zset.scores.get(args[3], 0.0) if zset is not None else 0.0
    score = current + delta
    if math.isnan(score):
        raise ErrorReply(base.NAN_RESULT)
    if zset is None:
        zset = ZSet()
        s.db.set(args[1], zset)
    zset.add(args[3], score)
    s.store.dirty += 1
    s.rewrite([b"ZADD", args[1], format_double(score), args[3]])
    return Double(score)


@command("zrem", -3, "write fast", (1, 1, 1), group="sorted-set", since="1.2.0")
def zrem(s: Session, args: list[bytes]) -> object:
    """Remove members; the number removed."""
    zset = get_zset(s.db, args[1])
    if zset is None:
        return 0
    removed = sum(zset.remove(member) for member in args[2:])
    if removed:
        s.store.dirty += 1
        drop_if_empty(s.db, args[1], zset)
    return removed


@command("zscore", 3, "readonly fast", (1, 1, 1), group="sorted-set", since="1.2.0")
def zscore(s: Session, args: list[bytes]) -> object:
    """A member's score."""
    zset = get_zset(s.db, args[1])
    score = zset.scores.get(args[2]) if zset is not None else None
    return None if score is None else Double(score)


@command("zmscore", -3, "readonly fast", (1, 1, 1), group="sorted-set", since="6.2.0")
def zmscore(s: Session, args: list[bytes]) -> object:
    """The scores of several members."""
    zset = get_zset(s.db, args[1])
    scores = zset.scores if zset is not None else {}
    return [None if member not in scores else Double(scores[member]) for member in args[2:]]


@command("zcard", 2, "readonly fast", (1, 1, 1), group="sorted-set", since="1.2.0")
def zcard(s: Session, args: list[bytes]) -> object:
    """The number of members."""
    return len(get_zset(s.db, args[1]) or ())


@command("zcount", 4, "readonly fast", (1, 1, 1), group="sorted-set", since="2.0.0")
def zcount(s: Session, args: list[bytes]) -> object:
    """The number of members with a score within bounds."""
    low, low_open = parse_score_bound(args[2])
    high, high_open = parse_score_bound(args[3])
    zset = get_zset(s.db, args[1])
    if zset is None:
        return 0
    start, stop = zset.score_range(low, low_open, high, high_open)
    return stop - start


@command("zlexcount", 4, "readonly fast", (1, 1, 1), group="sorted-set", since="2.8.9")
def zlexcount(s: Session, args: list[bytes]) -> object:
    """The number of members within a lexicographic range."""
    low, low_open = parse_lex_bound(args[2])
    high, high_open = parse_lex_bound(args[3])
    zset = get_zset(s.db, args[1])
    if zset is None:
        return 0
    start, stop = zset.lex_range(low, low_open, high, high_open)
    return stop - start


def _rank_slice(zset: ZSet, start: int, stop: int, reverse: bool) -> list[tuple[float, bytes]]:
    length = len(zset)
    if start < 0:
        start = max(length + start, 0)
    if stop < 0:
        stop = length + stop
    stop = min(stop, length - 1)
    if start > stop or start >= length:
        return []
    if reverse:
        start, stop = length - 1 - stop, length - 1 - start
        return list(zset.order.islice(start, stop + 1, reverse=True))
    return list(zset.order.islice(start, stop + 1))


def _range(
    s: Session,
    key: bytes,
    low_raw: bytes,
    high_raw: bytes,
    by: str,
    reverse: bool,
    limit: tuple[int, int] | None,
) -> list[tuple[float, bytes]]:
    """The members ZRANGE selects, in order. low_raw/high_raw are as given (max first when REV
    with BYSCORE or BYLEX)."""
    if by == "rank":
        start, stop = parse_int(low_raw), parse_int(high_raw)
        zset = get_zset(s.db, key)
        return [] if zset is None else _rank_slice(zset, start, stop, reverse)
    if reverse:
        low_raw, high_raw = high_raw, low_raw
    if by == "score":
        low, low_open = parse_score_bound(low_raw)
        high, high_open = parse_score_bound(high_raw)
        zset = get_zset(s.db, key)
        if zset is None:
            return []
        first, last = zset.score_range(low, low_open, high, high_open)
    else:
        lex_low, lex_low_open = parse_lex_bound(low_raw)
        lex_high, lex_high_open = parse_lex_bound(high_raw)
        zset = get_zset(s.db, key)
        if zset is None:
            return []
        first, last = zset.lex_range(lex_low, lex_low_open, lex_high, lex_high_open)
    offset, count = limit if limit is not None else (0, -1)
    if offset < 0:
        return []
    if reverse:
        stop = last - offset
        start = first if count < 0 else max(first, stop - count)
        return list(zset.order.islice(start, max(start, stop), reverse=True))
    start = first + offset
    stop = last if count < 0 else min(last, start + count)
    return list(zset.order.islice(start, max(start, stop)))


def _parse_range_options(
    args: list[bytes], position: int, allow_by: bool
) -> tuple[str | None, bool, tuple[int, int] | None, bool]:
    by: str | None = None
    reverse = False
    limit = None
    with_scores = False
    while position < len(args):
        option = args[position].lower()
        if option == b"withscores":
            with_scores = True
        elif option == b"limit" and position + 2 < len(args):
            limit = (parse_int(args[position + 1]), parse_int(args[position + 2]))
            position += 2
        elif allow_by and option == b"byscore":
            by = "score"
        elif allow_by and option == b"bylex":
            by = "lex"
        elif allow_by and option == b"rev":
            reverse = True
        else:
            raise ErrorReply(base.SYNTAX)
        position += 1
    return by, reverse, limit, with_scores


def _range_reply(s: Session, items: list[tuple[float, bytes]], with_scores: bool) -> object:
    return _with_scores(s, items) if with_scores else [member for _, member in items]


@command("zrange", -4, "readonly", (1, 1, 1), group="sorted-set", since="1.2.0")
def zrange(s: Session, args: list[bytes]) -> object:
    """Members by rank, score or lexicographic range, optionally reversed and limited."""
    by, reverse, limit, with_scores = _parse_range_options(args, 4, allow_by=True)
    if limit is not None and by is None:
        raise ErrorReply("ERR syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX")
    if with_scores and by == "lex":
        raise ErrorReply("ERR syntax error, WITHSCORES not supported in combination with BYLEX")
    items = _range(s, args[1], args[2], args[3], by or "rank", reverse, limit)
    return _range_reply(s, items, with_scores)


@command("zrevrange", -4, "readonly", (1, 1, 1), group="sorted-set", since="1.2.0")
def zrevrange(s: Session, args: list[bytes]) -> object:
    """Members by rank, highest score first."""
    _, _, limit, with_scores = _parse_range_options(args, 4, allow_by=False)
    if limit is not None:
        raise ErrorReply(base.SYNTAX)
    return _range_reply(s, _range(s, args[1], args[2], args[3], "rank", True, None), with_scores)


@command("zrangebyscore", -4, "readonly", (1, 1, 1), group="sorted-set", since="1.0.5")
def zrangebyscore(s: Session, args: list[bytes]) -> object:
    """Members with a score within bounds, lowest first."""
    _, _, limit, with_scores = _parse_range_options(args, 4, allow_by=False)
    return _range_reply(s, _range(s, args[1], args[2], args[3], "score", False, limit), with_scores)


@command("zrevrangebyscore", -4, "readonly", (1, 1, 1), group="sorted-set", since="2.2.0")
def zrevrangebyscore(s: Session, args: list[bytes]) -> object:
    """Members with a score within bounds (max first), highest first."""
    _, _, limit, with_scores = _parse_range_options(args, 4, allow_by=False)
    return _range_reply(s, _range(s, args[1], args[2], args[3], "score", True, limit), with_scores)


@command("zrangebylex", -4, "readonly", (1, 1, 1), group="sorted-set", since="2.8.9")
def zrangebylex(s: Session, args: list[bytes]) -> object:
    """Members within a lexicographic range."""
    _, _, limit, with_scores = _parse_range_options(args, 4, allow_by=False)
    if with_scores:
        raise ErrorReply(base.SYNTAX)
    return _range_reply(s, _range(s, args[1], args[2], args[3], "lex", False, limit), False)


def _rank(s: Session, args: list[bytes], reverse: bool) -> object:
    zset = get_zset(s.db, args[1])
    rank = zset.rank(args[2]) if zset is not None else None
    if rank is None or zset is None:
        return None
    return len(zset) - 1 - rank if reverse else rank


@command("zrank", 3, "readonly fast", (1, 1, 1), group="sorted-set", since="2.0.0")
def zrank(s: Session, args: list[bytes]) -> object:
    """A member's rank, lowest score first."""
    return _rank(s, args, reverse=False)


@command("zrevrank", 3, "readonly fast", (1, 1, 1), group="sorted-set", since="2.0.0")
def zrevrank(s: Session, args: list[bytes]) -> object:
    """A member's rank, highest score first."""
    return _rank(s, args, reverse=True)


def _pop(s: Session, key: bytes, count: int, highest: bool) -> list[tuple[float, bytes]]:
    zset = get_zset(s.db, key)
    if zset is None or count <= 0:
        return []
    items = [zset.order[-1 - index] if highest else zset.order[index] for index in range(min(count, len(zset)))]
    for _, member in items:
        zset.remove(member)
    s.store.dirty += 1
    drop_if_empty(s.db, key, zset)
    s.rewrite([b"ZREM", key, *(member for _, member in items)])
    return items


def _pop_command(s: Session, args: list[bytes], highest: bool) -> object:
    if len(args) > 3:
        raise ErrorReply(base.SYNTAX)
    count = 1
    if len(args) == 3:
        count = parse_int(args[2], base.MUST_BE_POSITIVE)
        if count < 0:
            raise ErrorReply(base.MUST_BE_POSITIVE)
    items = _pop(s, args[1], count, highest)
    if len(args) == 2 or not s.resp3:
        return [value for score, member in items for value in (member, Double(score))]
    return _with_scores(s, items)


@command("zpopmin", -2, "write fast", (1, 1, 1), group="sorted-set", since="5.0.0")
def zpopmin(s: Session, args: list[bytes]) -> object:
    """Remove and return the members with the lowest scores."""
    return _pop_command(s, args, highest=False)


@command("zpopmax", -2, "write fast", (1, 1, 1), group="sorted-set", since="5.0.0")
def zpopmax(s: Session, args: list[bytes]) -> object:
    """Remove and return the members with the highest scores."""
    return _pop_command(s, args, highest=True)


def _blocking_pop(s: Session, args: list[bytes], highest: bool) -> object:
    timeout = parse_timeout(args[-1])
    keys = args[1:-1]

    def attempt() -> object:
        for key in keys:
            items = _pop(s, key, 1, highest)
            if items:
                score, member = items[0]
                return [key, member, Double(score)]
        return NOT_READY

    reply = attempt()
    if reply is not NOT_READY:
        return reply
    if s.in_exec:
        return NULL_ARRAY
    return Blocked(keys, timeout, attempt, NULL_ARRAY)


@command("bzpopmin", -3, "write fast blocking", (1, -2, 1), group="sorted-set", since="5.0.0")
def bzpopmin(s: Session, args: list[bytes]) -> object:
    """ZPOPMIN of the first non-empty sorted set, waiting up to a timeout."""
    return _blocking_pop(s, args, highest=False)


@command("bzpopmax", -3, "write fast blocking", (1, -2, 1), group="sorted-set", since="5.0.0")
def bzpopmax(s: Session, args: list[bytes]) -> object:
    """ZPOPMAX of the first non-empty sorted set, waiting up to a timeout."""
    return _blocking_pop(s, args, highest=True)


def _remove_slice(s: Session, key: bytes, zset: ZSet, start: int, stop: int) -> int:
    items = list(zset.order.islice(start, stop))
    for _, member in items:
        zset.remove(member)
    if items:
        s.store.dirty += 1
        drop_if_empty(s.db, key, zset)
    return len(items)


@command("zremrangebyscore", 4, "write", (1, 1, 1), group="sorted-set", since="1.2.0")
def zremrangebyscore(s: Session, args: list[bytes]) -> object:
    """Remove the members with a score within bounds."""
    low, low_open = parse_score_bound(args[2])
    high, high_open = parse_score_bound(args[3])
    zset = get_zset(s.db, args[1])
    if zset is None:
        return 0
    start, stop = zset.score_range(low, low_open, high, high_open)
    return _remove_slice(s, args[1], zset, start, stop)


@command("zremrangebyrank", 4, "write", (1, 1, 1), group="sorted-set", since="2.0.0")
def zremrangebyrank(s: Session, args: list[bytes]) -> object:
    """Remove the members within a rank range."""
    start, stop = parse_int(args[2]), parse_int(args[3])
    zset = get_zset(s.db, args[1])
    if zset is None:
        return 0
    length = len(zset)
    if start < 0:
        start = max(length + start, 0)
    if stop < 0:
        stop = length + stop
    stop = min(stop, length - 1)
    if start > stop or start >= length:
        return 0
    return _remove_slice(s, args[1], zset, start, stop + 1)


@command("zremrangebylex", 4, "write", (1, 1, 1), group="sorted-set", since="2.8.9")
def zremrangebylex(s: Session, args: list[bytes]) -> object:
    """Remove the members within a lexicographic range."""
    low, low_open = parse_lex_bound(args[2])
    high, high_open = parse_lex_bound(args[3])
    zset = get_zset(s.db, args[1])
    if zset is None:
        return 0
    start, stop = zset.lex_range(low, low_open, high, high_open)
    return _remove_slice(s, args[1], zset, start, stop)


@command("zscan", -3, "readonly", (1, 1, 1), group="sorted-set", since="2.8.0")
def zscan(s: Session, args: list[bytes]) -> object:
    """Iterate the members of a sorted set with a cursor."""
    cursor = parse_cursor(args[2])
    pattern, count, _ = parse_scan_options(args[3:], allow_type=False)
    zset = get_zset(s.db, args[1]) or ZSet()
    if len(zset) <= max(count, SMALL_SCAN) and cursor == 0:
        next_cursor, page = 0, list(zset.scores)
    else:
        next_cursor, page = s.store.scans.page(cursor, count, lambda: list(zset.scores))
    matches = compile_glob(pattern) if pattern is not None else None
    out: list[object] = []
    for member in page:
        score = zset.scores.get(member)
        if score is not None and (matches is None or matches(member)):
            out += (member, format_double(score))
    return [b"%d" % next_cursor, out]
