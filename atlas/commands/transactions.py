"""MULTI EXEC DISCARD WATCH UNWATCH.

EXEC runs the queued commands back to back (nothing else runs in between: the server is one
event loop) and propagates their writes as one MULTI/EXEC block, so that a replay applies all
of them or none. WATCHed keys are invalidated by any change, expiry included.
"""

from __future__ import annotations

from atlas.commands.base import command
from atlas.commands.session import Session
from atlas.protocol import NULL_ARRAY, OK, ErrorReply

EXECABORT = "EXECABORT Transaction discarded because of previous errors."


@command("multi", 1, "fast loading stale", group="transactions", since="1.2.0")
def multi(s: Session, args: list[bytes]) -> object:
    """Start a transaction."""
    if s.multi is not None:
        raise ErrorReply("ERR MULTI calls can not be nested")
    s.multi = []
    s.multi_failed = False
    s.refresh_gate()
    return OK


@command("exec", 1, "loading stale", group="transactions", since="1.2.0")
def exec_(s: Session, args: list[bytes]) -> object:
    """Run the queued commands."""
    if s.multi is None:
        raise ErrorReply("ERR EXEC without MULTI")
    queued = s.multi
    s.multi = None
    s.refresh_gate()
    if s.multi_failed:
        s.multi_failed = False
        s.unwatch()
        raise ErrorReply(EXECABORT)
    for db_index, key in list(s.watching):
        s.store.dbs[db_index].lookup(key)  # a watched key that expired meanwhile counts as changed
    if s.watch_dirty:
        s.unwatch()
        return NULL_ARRAY
    s.unwatch()
    s.in_exec = True
    s.store.begin_transaction()
    try:
        return [s.execute(queued_args) for _, queued_args in queued]
    finally:
        s.in_exec = False
        s.store.end_transaction()


@command("discard", 1, "fast loading stale", group="transactions", since="2.0.0")
def discard(s: Session, args: list[bytes]) -> object:
    """Drop the queued commands."""
    if s.multi is None:
        raise ErrorReply("ERR DISCARD without MULTI")
    s.multi = None
    s.multi_failed = False
    s.unwatch()
    s.refresh_gate()
    return OK


@command("watch", -2, "fast loading stale", (1, -1, 1), group="transactions", since="2.2.0")
def watch(s: Session, args: list[bytes]) -> object:
    """Make the next EXEC fail if any of these keys changes before it."""
    if s.multi is not None:
        raise ErrorReply("ERR WATCH inside MULTI is not allowed")
    db = s.db
    for key in args[1:]:
        db.lookup(key)  # an already expired key goes now, not as a "change" at EXEC
        s.watching.add((db.index, key))
        db.watched.setdefault(key, set()).add(s)
    return OK


@command("unwatch", 1, "fast loading stale", group="transactions", since="2.2.0")
def unwatch(s: Session, args: list[bytes]) -> object:
    """Forget every watched key."""
    s.unwatch()
    return OK
