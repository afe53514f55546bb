"""String commands. Relative TTLs are propagated as absolute PXAT/PEXPIREAT, INCRBYFLOAT as the
SET of its result, so that what the AOF or Raft log replays is deterministic."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation, localcontext

from atlas.commands import base
from atlas.commands.base import INT64_MAX, INT64_MIN, command, parse_int
from atlas.commands.session import Session
from atlas.commands.values import get_string
from atlas.protocol import OK, ErrorReply

MAX_EXPIRE_MS = INT64_MAX // 2  # Redis refuses TTLs whose absolute time would overflow


def absolute_deadline(s: Session, unit: bytes, raw: bytes, command_name: str) -> int:
    """The absolute millisecond deadline of EX/PX/EXAT/PXAT `raw` (validated as Redis does)."""
    amount = parse_int(raw)
    if amount <= 0:
        raise ErrorReply(base.invalid_expire_time(command_name))
    if unit in (b"ex", b"exat"):
        if amount > MAX_EXPIRE_MS // 1000:
            raise ErrorReply(base.invalid_expire_time(command_name))
        amount *= 1000
    if unit in (b"ex", b"px"):
        amount += s.store.now_ms()
    if amount > MAX_EXPIRE_MS:
        raise ErrorReply(base.invalid_expire_time(command_name))
    return amount


def apply_deadline(s: Session, key: bytes, deadline: int) -> None:
    """Give an existing key an absolute deadline, propagated as PEXPIREAT; one already past
    deletes the key, propagated as DEL (what a replay must do whatever its clock says)."""
    if deadline <= s.store.now_ms():
        s.db.delete(key)
        s.rewrite([b"DEL", key])
    else:
        s.db.expire_at(key, deadline)
        s.rewrite([b"PEXPIREAT", key, b"%d" % deadline])


def set_with_deadline(s: Session, key: bytes, value: bytes, deadline: int | None, keep_ttl: bool = False) -> None:
    """Store a string, with an absolute deadline when given, and propagate it deterministically."""
    db = s.db
    if deadline is not None and deadline <= s.store.now_ms():
        db.set(key, value)
        apply_deadline(s, key, deadline)
        return
    db.set(key, value, keep_ttl=keep_ttl)
    if deadline is not None:
        db.expire_at(key, deadline)
        s.rewrite([b"SET", key, value, b"PXAT", b"%d" % deadline])
    elif keep_ttl:
        s.rewrite([b"SET", key, value, b"KEEPTTL"])
    else:
        s.rewrite([b"SET", key, value])


@command("get", 2, "readonly fast", (1, 1, 1), group="string")
def get(s: Session, args: list[bytes]) -> object:
    """Get the value of a key."""
    return get_string(s.db, args[1])


@command("set", -3, "write denyoom", (1, 1, 1), group="string")
def set_(s: Session, args: list[bytes]) -> object:
    """Set the string value of a key, with expiry and conditions."""
    key, value = args[1], args[2]
    if len(args) == 3:  # the common case, first
        s.db.set(key, value)
        return OK
    condition = None
    deadline = None
    keep_ttl = False
    want_old = False
    position = 3
    expiry_given = False
    while position < len(args):
        option = args[position].lower()
        if option in (b"nx", b"xx") and condition in (None, option):
            condition = option
        elif option == b"get":
            want_old = True
        elif option == b"keepttl" and not expiry_given:
            keep_ttl = True
        elif option in (b"ex", b"px", b"exat", b"pxat") and not keep_ttl and not expiry_given:
            if position + 1 >= len(args):
                raise ErrorReply(base.SYNTAX)
            deadline = absolute_deadline(s, option, args[position + 1], "set")
            expiry_given = True
            position += 1
        else:
            raise ErrorReply(base.SYNTAX)
        position += 1
    db = s.db
    old = get_string(db, key) if want_old else db.lookup(key)
    exists = old is not None
    if (condition == b"nx" and exists) or (condition == b"xx" and not exists):
        return old if want_old else None
    set_with_deadline(s, key, value, deadline, keep_ttl)
    return old if want_old else OK


@command("setnx", 3, "write denyoom fast", (1, 1, 1), group="string")
def setnx(s: Session, args: list[bytes]) -> object:
    """Set a key only if it does not exist."""
    if s.db.contains(args[1]):
        return 0
    s.db.set(args[1], args[2])
    return 1


def _set_expiring(s: Session, args: list[bytes], unit: bytes, name: str) -> object:
    deadline = absolute_deadline(s, unit, args[2], name)
    set_with_deadline(s, args[1], args[3], deadline)
    return OK


@command("setex", 4, "write denyoom", (1, 1, 1), group="string")
def setex(s: Session, args: list[bytes]) -> object:
    """Set a key with a time to live in seconds."""
    return _set_expiring(s, args, b"ex", "setex")


@command("psetex", 4, "write denyoom", (1, 1, 1), group="string")
def psetex(s: Session, args: list[bytes]) -> object:
    """Set a key with a time to live in milliseconds."""
    return _set_expiring(s, args, b"px", "psetex")


@command("getset", 3, "write denyoom fast", (1, 1, 1), group="string")
def getset(s: Session, args: list[bytes]) -> object:
    """Set a key and return its old value."""
    old = get_string(s.db, args[1])
    s.db.set(args[1], args[2])
    return old


@command("getdel", 2, "write fast", (1, 1, 1), group="string", since="6.2.0")
def getdel(s: Session, args: list[bytes]) -> object:
    """Get a key's value and delete the key."""
    value = get_string(s.db, args[1])
    if value is not None:
        s.db.delete(args[1])
        s.rewrite([b"DEL", args[1]])
    return value


@command("getex", -2, "write fast", (1, 1, 1), group="string", since="6.2.0")
def getex(s: Session, args: list[bytes]) -> object:
    """Get a key's value and change its expiry."""
    key = args[1]
    deadline = None
    persist = False
    if len(args) > 2:
        option = args[2].lower()
        if option == b"persist" and len(args) == 3:
            persist = True
        elif option in (b"ex", b"px", b"exat", b"pxat") and len(args) == 4:
            deadline = absolute_deadline(s, option, args[3], "getex")
        else:
            raise ErrorReply(base.SYNTAX)
    value = get_string(s.db, key)
    if value is None:
        return None
    if deadline is not None:
        apply_deadline(s, key, deadline)
    elif persist and s.db.persist(key):
        s.rewrite([b"PERSIST", key])
    return value


@command("mget", -2, "readonly fast", (1, -1, 1), group="string")
def mget(s: Session, args: list[bytes]) -> object:
    """Get the values of several keys (nil for missing keys and non-strings)."""
    db = s.db
    values = []
    for key in args[1:]:
        value = db.lookup(key)
        values.append(value if type(value) is bytes else None)
    return values


@command("mset", -3, "write denyoom", (1, -1, 2), group="string")
def mset(s: Session, args: list[bytes]) -> object:
    """Set several keys."""
    if len(args) % 2 == 0:
        raise ErrorReply(base.wrong_arity("mset"))
    db = s.db
    for position in range(1, len(args), 2):
        db.set(args[position], args[position + 1])
    return OK


@command("msetnx", -3, "write denyoom", (1, -1, 2), group="string")
def msetnx(s: Session, args: list[bytes]) -> object:
    """Set several keys, only if none of them exists."""
    if len(args) % 2 == 0:
        raise ErrorReply(base.wrong_arity("msetnx"))
    db = s.db
    if any(db.contains(args[position]) for position in range(1, len(args), 2)):
        return 0
    for position in range(1, len(args), 2):
        db.set(args[position], args[position + 1])
    return 1


def _increment(s: Session, key: bytes, delta: int) -> int:
    db = s.db
    current = get_string(db, key)
    value = 0 if current is None else parse_int(current)
    result = value + delta
    if not INT64_MIN <= result <= INT64_MAX:
        raise ErrorReply(base.OVERFLOW)
    db.set(key, b"%d" % result, keep_ttl=True)
    return result


@command("incr", 2, "write denyoom fast", (1, 1, 1), group="string")
def incr(s: Session, args: list[bytes]) -> object:
    """Increment the integer value of a key by one."""
    return _increment(s, args[1], 1)


@command("decr", 2, "write denyoom fast", (1, 1, 1), group="string")
def decr(s: Session, args: list[bytes]) -> object:
    """Decrement the integer value of a key by one."""
    return _increment(s, args[1], -1)


@command("incrby", 3, "write denyoom fast", (1, 1, 1), group="string")
def incrby(s: Session, args: list[bytes]) -> object:
    """Increment the integer value of a key."""
    return _increment(s, args[1], parse_int(args[2]))


@command("decrby", 3, "write denyoom fast", (1, 1, 1), group="string")
def decrby(s: Session, args: list[bytes]) -> object:
    """Decrement the integer value of a key."""
    delta = parse_int(args[2])
    if delta == INT64_MIN:
        raise ErrorReply("ERR decrement would overflow")
    return _increment(s, args[1], -delta)


def parse_decimal(raw: bytes, error: str) -> Decimal:
    """A float argument as an exact decimal (INCRBYFLOAT arithmetic, like Redis's long double)."""
    text = raw.decode("ascii", "replace")
    if not text or text != text.strip() or "_" in text:
        raise ErrorReply(error)
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise ErrorReply(error) from None
    if not value.is_finite():
        raise ErrorReply(error)
    return value


def format_decimal(value: Decimal) -> bytes:
    """Redis's %.17Lf-then-trimmed form: plain notation, at most 17 significant digits."""
    with localcontext() as context:
        context.prec = 17
        rounded = +value
    text = f"{rounded:f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return (text if text not in ("-0", "") else "0").encode()


def add_float(current: bytes | None, increment: bytes, not_float: str) -> bytes:
    """current + increment as INCRBYFLOAT computes it; the formatted result."""
    delta = parse_decimal(increment, base.NOT_FLOAT)
    value = Decimal(0) if current is None else parse_decimal(current, not_float)
    with localcontext() as context:
        context.prec = 40
        result = value + delta
    if abs(result) > Decimal("1.7976931348623157e308"):
        raise ErrorReply("ERR increment would produce NaN or Infinity")
    return format_decimal(result)


@command("incrbyfloat", 3, "write denyoom fast", (1, 1, 1), group="string")
def incrbyfloat(s: Session, args: list[bytes]) -> object:
    """Increment the float value of a key."""
    key = args[1]
    result = add_float(get_string(s.db, key), args[2], base.NOT_FLOAT)
    s.db.set(key, result, keep_ttl=True)
    s.rewrite([b"SET", key, result, b"KEEPTTL"])
    return result


def _check_size(s: Session, size: int) -> None:
    if size > s.state.config.proto_max_bulk_len:
        raise ErrorReply(base.STRING_TOO_LONG)


@command("append", 3, "write denyoom fast", (1, 1, 1), group="string")
def append(s: Session, args: list[bytes]) -> object:
    """Append to a string."""
    current = get_string(s.db, args[1]) or b""
    _check_size(s, len(current) + len(args[2]))
    value = current + args[2]
    s.db.set(args[1], value, keep_ttl=True)
    return len(value)


@command("strlen", 2, "readonly fast", (1, 1, 1), group="string")
def strlen(s: Session, args: list[bytes]) -> object:
    """The length of a string."""
    return len(get_string(s.db, args[1]) or b"")


def _clamp_range(start: int, end: int, length: int) -> tuple[int, int] | None:
    """Redis's inclusive [start, end] with negative indexes, clamped; None when empty."""
    if start < 0:
        start = max(length + start, 0)
    if end < 0:
        end = length + end
    end = min(end, length - 1)
    if start > end or length == 0:
        return None
    return start, end


@command("getrange", 4, "readonly", (1, 1, 1), group="string")
def getrange(s: Session, args: list[bytes]) -> object:
    """A substring of a string."""
    start, end = parse_int(args[2]), parse_int(args[3])
    value = get_string(s.db, args[1]) or b""
    if start < 0 and end < 0 and start > end:
        return b""
    bounds = _clamp_range(start, end, len(value))
    return b"" if bounds is None else value[bounds[0] : bounds[1] + 1]


@command("setrange", 4, "write denyoom", (1, 1, 1), group="string")
def setrange(s: Session, args: list[bytes]) -> object:
    """Overwrite part of a string at an offset."""
    key, patch = args[1], args[3]
    offset = parse_int(args[2])
    if offset < 0:
        raise ErrorReply(base.OFFSET_OUT_OF_RANGE)
    current = get_string(s.db, key)
    if not patch:
        return len(current or b"")
    _check_size(s, offset + len(patch))
    value = bytearray(current or b"")
    if len(value) < offset:
        value.extend(b"\x00" * (offset - len(value)))
    value[offset : offset + len(patch)] = patch
    s.db.set(key, bytes(value), keep_ttl=True)
    return len(value)
