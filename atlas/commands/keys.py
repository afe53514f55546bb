"""Generic key commands: DEL EXISTS TYPE KEYS SCAN RENAME COPY, the EXPIRE family, TTLs."""

from __future__ import annotations

from atlas.commands import base
from atlas.commands.base import command, parse_int
from atlas.commands.session import Session, touch_watchers
from atlas.commands.strings import MAX_EXPIRE_MS, apply_deadline
from atlas.protocol import OK, ErrorReply, Status
from atlas.store.glob import compile_glob
from atlas.store.types import deep_copy, type_name


@command("del", -2, "write", (1, -1, 1), group="keyspace")
def delete(s: Session, args: list[bytes]) -> object:
    """Delete keys; the number deleted."""
    db = s.db
    return sum(db.delete(key) for key in args[1:])


@command("unlink", -2, "write fast", (1, -1, 1), group="keyspace", since="4.0.0")
def unlink(s: Session, args: list[bytes]) -> object:
    """Delete keys (memory is freed at once here too); the number deleted."""
    return delete(s, args)


@command("exists", -2, "readonly fast", (1, -1, 1), group="keyspace")
def exists(s: Session, args: list[bytes]) -> object:
    """How many of the keys exist (a key named twice counts twice)."""
    db = s.db
    return sum(db.contains(key) for key in args[1:])


@command("touch", -2, "readonly fast", (1, -1, 1), group="keyspace", since="3.2.1")
def touch(s: Session, args: list[bytes]) -> object:
    """How many of the keys exist (ATLAS keeps no access times)."""
    return exists(s, args)


@command("type", 2, "readonly fast", (1, 1, 1), group="keyspace")
def type_(s: Session, args: list[bytes]) -> object:
    """The type of a key's value, or none."""
    value = s.db.lookup(args[1])
    return Status(b"none" if value is None else type_name(value))


@command("keys", 2, "readonly", group="keyspace")
def keys(s: Session, args: list[bytes]) -> object:
    """Every key matching a glob pattern (O(n): prefer SCAN)."""
    matches = compile_glob(args[1])
    return [key for key in s.db.live_keys() if matches(key)]


def parse_cursor(raw: bytes) -> int:
    try:
        cursor = int(raw)
    except ValueError:
        raise ErrorReply(base.INVALID_CURSOR) from None
    if cursor < 0 or cursor > 2**64 - 1 or not raw.isdigit():
        raise ErrorReply(base.INVALID_CURSOR)
    return cursor


def parse_scan_options(args: list[bytes], allow_type: bool) -> tuple[bytes | None, int, bytes | None]:
    """(MATCH pattern, COUNT, TYPE) of a SCAN-family call, from args after the cursor."""
    pattern = None
    count = 10
    wanted_type = None
    position = 0
    while position < len(args):
        option = args[position].lower()
        if position + 1 >= len(args):
            raise ErrorReply(base.SYNTAX)
        if option == b"match":
            pattern = args[position + 1]
        elif option == b"count":
            count = parse_int(args[position + 1])
            if count < 1:
                raise ErrorReply(base.SYNTAX)
        elif option == b"type" and allow_type:
            wanted_type = args[position + 1].lower()
        else:
            raise ErrorReply(base.SYNTAX)
        position += 2
    return pattern, count, wanted_type


@command("scan", -2, "readonly", group="keyspace", since="2.8.0")
def scan(s: Session, args: list[bytes]) -> object:
    """Iterate the keyspace with a cursor."""
    cursor = parse_cursor(args[1])
    pattern, count, wanted_type = parse_scan_options(args[2:], allow_type=True)
    db = s.db
    next_cursor, page = s.store.scans.page(cursor, count, lambda: list(db.data))
    matches = compile_glob(pattern) if pattern is not None else None
    found = []
    for key in page:
        value = db.lookup(key)
        if value is None or (matches is not None and not matches(key)):
            continue
        if wanted_type is not None and type_name(value) != wanted_type:
            continue
        found.append(key)
    return [b"%d" % next_cursor, found]


@command("randomkey", 1, "readonly", group="keyspace")
def randomkey(s: Session, args: list[bytes]) -> object:
    """A random key, or nil when the database is empty."""
    return s.db.random_key()


def _rename(s: Session, args: list[bytes], only_if_new: bool) -> bool:
    db = s.db
    source, target = args[1], args[2]
    value = db.lookup(source)
    if value is None:
        raise ErrorReply(base.NO_SUCH_KEY)
    if source == target:
        return not only_if_new
    if only_if_new and db.contains(target):
        return False
    deadline = db.deadline(source)
    db.pop(source)
    db.set(target, value)
    if deadline is not None:
        db.expire_at(target, deadline)
    return True


@command("rename", 3, "write", (1, 2, 1), group="keyspace")
def rename(s: Session, args: list[bytes]) -> object:
    """Rename a key (its TTL goes with it)."""
    _rename(s, args, only_if_new=False)
    return OK


@command("renamenx", 3, "write fast", (1, 2, 1), group="keyspace")
def renamenx(s: Session, args: list[bytes]) -> object:
    """Rename a key only if the new name is free."""
    return int(_rename(s, args, only_if_new=True))


@command("copy", -3, "write denyoom", (1, 2, 1), group="keyspace", since="6.2.0")
def copy(s: Session, args: list[bytes]) -> object:
    """Copy a key, optionally to another database, optionally replacing."""
    source, target = args[1], args[2]
    target_db = s.db
    replace = False
    position = 3
    while position < len(args):
        option = args[position].lower()
        if option == b"replace":
            replace = True
        elif option == b"db" and position + 1 < len(args):
            index = parse_int(args[position + 1])
            if not 0 <= index < len(s.store.dbs):
                raise ErrorReply(base.DB_INDEX_OUT_OF_RANGE)
            target_db = s.store.dbs[index]
            position += 1
        else:
            raise ErrorReply(base.SYNTAX)
        position += 1
    if target_db is s.db and source == target:
        raise ErrorReply("ERR source and destination objects are the same")
    value = s.db.lookup(source)
    if value is None:
        return 0
    if target_db.contains(target) and not replace:
        return 0
    deadline = s.db.deadline(source)
    target_db.set(target, deep_copy(value))
    if deadline is not None:
        target_db.expire_at(target, deadline)
    if target_db is not s.db:
        touch_watchers(target_db, target)
        if target in target_db.blocked:
            s.state.ready_keys.append((target_db, target))
    return 1


# -- expiry -------------------------------------------------------------------------------------


def _expire(s: Session, args: list[bytes], unit: bytes, name: str) -> object:
    key = args[1]
    amount = parse_int(args[2])
    flags = {arg.lower() for arg in args[3:]}
    if not flags <= {b"nx", b"xx", b"gt", b"lt"}:
        raise ErrorReply(base.SYNTAX)
    if b"nx" in flags and flags & {b"xx", b"gt", b"lt"}:
        raise ErrorReply("ERR NX and XX, GT or LT options at the same time are not compatible")
    if {b"gt", b"lt"} <= flags:
        raise ErrorReply("ERR GT and LT options at the same time are not compatible")
    if unit in (b"ex", b"exat"):
        if abs(amount) > MAX_EXPIRE_MS // 1000:
            raise ErrorReply(base.invalid_expire_time(name))
        amount *= 1000
    deadline = amount + s.store.now_ms() if unit in (b"ex", b"px") else amount
    if abs(deadline) > MAX_EXPIRE_MS:
        raise ErrorReply(base.invalid_expire_time(name))
    db = s.db
    if db.lookup(key) is None:
        return 0
    current = db.deadline(key)
    if b"nx" in flags and current is not None:
        return 0
    if b"xx" in flags and current is None:
        return 0
    if b"gt" in flags and (current is None or deadline <= current):
        return 0
    if b"lt" in flags and current is not None and deadline >= current:
        return 0
    apply_deadline(s, key, deadline)
    return 1


@command("expire", -3, "write fast", (1, 1, 1), group="keyspace")
def expire(s: Session, args: list[bytes]) -> object:
    """Set a key's time to live in seconds."""
    return _expire(s, args, b"ex", "expire")


@command("pexpire", -3, "write fast", (1, 1, 1), group="keyspace", since="2.6.0")
def pexpire(s: Session, args: list[bytes]) -> object:
    """Set a key's time to live in milliseconds."""
    return _expire(s, args, b"px", "pexpire")


@command("expireat", -3, "write fast", (1, 1, 1), group="keyspace", since="1.2.0")
def expireat(s: Session, args: list[bytes]) -> object:
    """Set a key's expiry as a Unix time in seconds."""
    return _expire(s, args, b"exat", "expireat")


@command("pexpireat", -3, "write fast", (1, 1, 1), group="keyspace", since="2.6.0")
def pexpireat(s: Session, args: list[bytes]) -> object:
    """Set a key's expiry as a Unix time in milliseconds."""
    return _expire(s, args, b"pxat", "pexpireat")


@command("ttl", 2, "readonly fast", (1, 1, 1), group="keyspace")
def ttl(s: Session, args: list[bytes]) -> object:
    """Seconds to live (-1 without expiry, -2 for a missing key)."""
    remaining = s.db.ttl_ms(args[1])
    return remaining if remaining < 0 else (remaining + 500) // 1000


@command("pttl", 2, "readonly fast", (1, 1, 1), group="keyspace", since="2.6.0")
def pttl(s: Session, args: list[bytes]) -> object:
    """Milliseconds to live (-1 without expiry, -2 for a missing key)."""
    return s.db.ttl_ms(args[1])


@command("expiretime", 2, "readonly fast", (1, 1, 1), group="keyspace", since="7.0.0")
def expiretime(s: Session, args: list[bytes]) -> object:
    """The absolute expiry as a Unix time in seconds (-1, -2 as TTL)."""
    if s.db.lookup(args[1]) is None:
        return -2
    deadline = s.db.deadline(args[1])
    return -1 if deadline is None else deadline // 1000


@command("pexpiretime", 2, "readonly fast", (1, 1, 1), group="keyspace", since="7.0.0")
def pexpiretime(s: Session, args: list[bytes]) -> object:
    """The absolute expiry as a Unix time in milliseconds (-1, -2 as TTL)."""
    if s.db.lookup(args[1]) is None:
        return -2
    deadline = s.db.deadline(args[1])
    return -1 if deadline is None else deadline


@command("persist", 2, "write fast", (1, 1, 1), group="keyspace", since="2.2.0")
def persist(s: Session, args: list[bytes]) -> object:
    """Remove a key's expiry."""
    return int(s.db.persist(args[1]))
