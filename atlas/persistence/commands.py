"""Persistence commands: SAVE BGSAVE BGREWRITEAOF LASTSAVE.

In ATLAS a snapshot and an AOF rewrite are one operation (the snapshot becomes the base of a fresh
AOF), so BGSAVE and BGREWRITEAOF start the same background job, with Redis's replies.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from atlas.commands import base
from atlas.commands.base import command
from atlas.commands.session import Session
from atlas.protocol import OK, ErrorReply, Status

if TYPE_CHECKING:
    from atlas.persistence.engine import Persistence

IN_PROGRESS = "ERR Background save already in progress"


def _persistence(s: Session) -> Persistence:
    persistence = s.state.persistence
    if persistence is None:
        raise ErrorReply("ERR persistence is not enabled in this process")
    return persistence


def _start(s: Session) -> None:
    from atlas.persistence.files import PersistenceError

    try:
        _persistence(s).begin_rewrite(background=True)
    except (OSError, PersistenceError) as exc:
        raise ErrorReply(f"ERR snapshot failed: {exc}") from None


@command("save", 1, "admin", group="server")
def save(s: Session, args: list[bytes]) -> object:
    """Write a snapshot now (the server waits), and start a fresh AOF after it."""
    from atlas.persistence.files import PersistenceError

    persistence = _persistence(s)
    if persistence.rewriting:
        raise ErrorReply(IN_PROGRESS)
    try:
        persistence.save()
    except (OSError, PersistenceError) as exc:
        raise ErrorReply(f"ERR snapshot failed: {exc}") from None
    return OK


@command("bgsave", -1, "admin", group="server")
def bgsave(s: Session, args: list[bytes]) -> object:
    """Write a snapshot in a forked child while the server goes on serving."""
    if len(args) > 2 or (len(args) == 2 and args[1].lower() != b"schedule"):
        raise ErrorReply(base.SYNTAX)
    persistence = _persistence(s)
    if persistence.rewriting:
        if len(args) == 2:
            persistence.rewrite_scheduled = True
            return Status(b"Background saving scheduled")
        raise ErrorReply(IN_PROGRESS)
    _start(s)
    return Status(b"Background saving started")


@command("bgrewriteaof", 1, "admin", group="server")
def bgrewriteaof(s: Session, args: list[bytes]) -> object:
    """Rewrite the AOF: a background snapshot becomes its new base."""
    persistence = _persistence(s)
    if persistence.rewriting:
        persistence.rewrite_scheduled = True
        return Status(b"Background append only file rewriting scheduled")
    _start(s)
    return Status(b"Background append only file rewriting started")


@command("lastsave", 1, "fast loading stale", group="server")
def lastsave(s: Session, args: list[bytes]) -> object:
    """The Unix time of the last successful snapshot."""
    return int(_persistence(s).last_snapshot_time)
