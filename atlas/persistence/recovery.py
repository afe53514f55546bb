"""Recovery: the manifest's snapshot, then its AOF files replayed in order.

Commands are replayed through the command handlers (the AOF holds them in deterministic form) with
the store's clock held at the epoch, so that nothing expires during the replay: a key that was
alive when a command touched it is alive when the command is replayed. Keys whose deadline passed
are reclaimed by normal expiry once the server runs (as Redis does after loading).

A torn tail of the last AOF file (a crash mid-write) is cut off with a warning. Anything else that
is not a well-formed record stops the start with `AofCorruption`, whose message names the file, the
offset and the command that truncates there.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from atlas.commands.session import TABLE, ServerState, Session, build_table
from atlas.persistence.aof import CommandCheck, ScanResult, scan
from atlas.persistence.files import DataDir, Manifest, PersistenceError
from atlas.persistence.snapshot import SnapshotError, read_snapshot
from atlas.protocol import ErrorReply
from atlas.store.keyspace import Store

logger = logging.getLogger(__name__)


class AofCorruption(PersistenceError):
    """An AOF file is damaged before its end; the message is the one line an operator needs."""

    def __init__(self, path: Path, offset: int, good_until: int, size: int, reason: str) -> None:
        self.path = path
        self.offset = offset
        where = "there" if good_until == offset else f"at offset {good_until}, where its last whole transaction ends"
        super().__init__(
            f"AOF {path} is corrupt at offset {offset} of {size} ({reason}): "
            f"run `manage.py atlas_check_aof {path} --fix` to truncate it {where} "
            f"(the {size - good_until} bytes after that are lost), then start again"
        )


@dataclass
class RecoveryReport:
    keys: int = 0
    seconds: float = 0.0
    snapshot_keys: int = 0
    snapshot_size: int = 0
    aof_records: int = 0
    truncated: list[tuple[str, int, int]] = field(default_factory=list)  # (file, offset, bytes dropped)


def command_check(argv: list[bytes]) -> str | None:
    """Why a record cannot be replayed (unknown command, wrong arity), or None."""
    if not TABLE:
        build_table()
    cmd = TABLE.get(argv[0].lower())
    if cmd is None:
        return f"unknown command {argv[0][:64]!r}"
    count = len(argv)
    if (cmd.arity > 0 and count != cmd.arity) or count < -cmd.arity:
        return f"wrong number of arguments for {cmd.name}"
    return None


class Replayer:
    """Applies AOF records to a ServerState's keyspace through the command handlers."""

    def __init__(self, state: ServerState) -> None:
        if not TABLE:
            build_table()
        self.session = Session(state, 0, "aof", "aof")

    def start_file(self) -> None:
        self.session.select(0)  # every AOF file starts in database 0, as in Redis

    def __call__(self, argv: list[bytes]) -> None:
        cmd = TABLE.get(argv[0]) or TABLE[argv[0].lower()]
        if cmd.name in ("multi", "exec"):
            return  # scan() hands on whole blocks only: their commands apply one after the other
        # The handler alone: a replay is not traffic (no statistics) and propagates nothing.
        try:  # noqa: SIM105 - cheaper than contextlib.suppress, once per replayed command
            cmd.handler(self.session, argv)
        except ErrorReply:
            pass  # the original command's error (WRONGTYPE...), as Redis ignores them on load


def load_state(
    state: ServerState,
    datadir: DataDir,
    manifest: Manifest,
    *,
    repair_tail: bool = True,
    check: CommandCheck = command_check,
) -> RecoveryReport:
    """Fill state's (empty) keyspace from the files the manifest names."""
    started = time.monotonic()
    store: Store = state.store
    report = RecoveryReport()
    if manifest.snapshot:
        path = datadir.file(manifest.snapshot)
        if not path.exists():
            raise PersistenceError(f"the manifest names {path}, which is missing")
        try:
            info = read_snapshot(store, path)
        except SnapshotError as exc:
            raise PersistenceError(f"snapshot {exc}") from None
        report.snapshot_keys = info.keys
        report.snapshot_size = info.size
    replayer = Replayer(state)
    saved_clock = store.clock
    store.clock = _epoch
    try:
        for index, name in enumerate(manifest.aofs):
            path = datadir.file(name)
            try:
                data = path.read_bytes()
            except FileNotFoundError:
                raise PersistenceError(f"the manifest names {path}, which is missing") from None
            replayer.start_file()
            result = scan(data, on_record=replayer, check=check)
            report.aof_records += result.records
            if result.problem is not None:
                last = index == len(manifest.aofs) - 1
                _settle(path, data, result, last, repair_tail, report)
    finally:
        store.clock = saved_clock
    report.keys = store.key_count()
    report.seconds = time.monotonic() - started
    return report


def _settle(path: Path, data: bytes, result: ScanResult, last: bool, repair: bool, report: RecoveryReport) -> None:
    problem = result.problem
    assert problem is not None
    if not (problem.torn and last):
        raise AofCorruption(path, problem.offset, result.good_until, len(data), problem.reason)
    dropped = len(data) - result.good_until
    report.truncated.append((str(path), result.good_until, dropped))
    if not repair:
        return
    logger.warning(
        "AOF %s ends with a torn record (%s): truncating %d bytes at offset %d",
        path,
        problem.reason,
        dropped,
        result.good_until,
        extra={"action": "aof_truncated", "file": str(path), "offset": result.good_until, "dropped": dropped},
    )
    fd = os.open(path, os.O_WRONLY)
    try:
        os.ftruncate(fd, result.good_until)
        os.fsync(fd)
    finally:
        os.close(fd)


def _epoch() -> float:
    return 0.0
