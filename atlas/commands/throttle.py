"""CL.THROTTLE: rate limiting by GCRA, reply-compatible with the redis-cell module.

    CL.THROTTLE key max_burst count_per_period period [quantity]
    -> [limited (0|1), limit, remaining, retry_after (s, -1 when allowed), reset_after (s)]

The limit is max_burst + 1 requests at once, refilling count_per_period every period seconds.
The key holds the theoretical arrival time in nanoseconds and expires when the bucket is full
again; it is propagated as a SET with an absolute PXAT, like any other write.
"""

from __future__ import annotations

from atlas.commands.base import command, parse_int
from atlas.commands.session import Session
from atlas.commands.values import get_string
from atlas.protocol import ErrorReply

NANOS = 1_000_000_000


def _positive(raw: bytes, name: str, minimum: int) -> int:
    value = parse_int(raw)
    if value < minimum:
        raise ErrorReply(f"ERR {name} must be {'positive' if minimum else 'zero or more'}")
    return value


def _whole_seconds_up(nanoseconds: int) -> int:
    """redis-cell rounds a partial second up, so that a client never retries too early."""
    seconds, rest = divmod(nanoseconds, NANOS)
    return seconds + (1 if rest >= 1_000_000 else 0)


@command("cl.throttle", -5, "write denyoom fast", (1, 1, 1), group="rate-limit", since="7.0.0")
def throttle(s: Session, args: list[bytes]) -> object:
    """Count a request against a GCRA rate limit; say whether it is allowed."""
    if len(args) > 6:
        raise ErrorReply(f"ERR wrong number of arguments for '{args[0].decode('utf-8', 'replace')}' command")
    key = args[1]
    max_burst = _positive(args[2], "max_burst", 0)
    count = _positive(args[3], "count per period", 1)
    period = _positive(args[4], "period", 1)
    quantity = _positive(args[5], "quantity", 0) if len(args) == 6 else 1

    emission = period * NANOS // count
    tolerance = emission * (max_burst + 1)
    increment = emission * quantity
    now = int(s.store.clock() * NANOS)
    stored = get_string(s.db, key)
    tat = now if stored is None else max(parse_int(stored), now)
    new_tat = tat + increment
    allow_at = new_tat - tolerance
    difference = now - allow_at
    if difference < 0:
        limited = True
        retry_after = -difference if increment <= tolerance else -1
        ttl = tat - now
    else:
        limited = False
        retry_after = -1
        ttl = new_tat - now
        if quantity:
            deadline_ms = -(-new_tat // 1_000_000)
            s.db.set(key, b"%d" % new_tat)
            s.db.expire_at(key, deadline_ms)
            s.rewrite([b"SET", key, b"%d" % new_tat, b"PXAT", b"%d" % deadline_ms])
    remaining_window = tolerance - ttl
    remaining = remaining_window // emission if remaining_window > -emission else 0
    return [
        int(limited),
        max_burst + 1,
        max(remaining, 0),
        -1 if retry_after < 0 else _whole_seconds_up(retry_after),
        _whole_seconds_up(max(ttl, 0)),
    ]
