"""The append-only file: RESP-encoded commands, exactly what redis-check-aof expects.

Writing: `AofFile` appends with pwrite at the size it knows is good, so a failed or partial write
never leaves a record half-written ahead of later ones (the tail is cut back with ftruncate before
anything else is written). `fsync` uses fdatasync.

Reading: `scan` walks records and stops at the first problem, which is either a torn tail (the
file ends inside a record or inside a MULTI block: a crash mid-write, truncated on start) or a
corruption (bytes that are not a record, an unknown command, MULTI/EXEC out of order: the start is
refused, and `atlas_check_aof --fix` truncates there). A tail of zero bytes (a file extended by a
crash before its data reached the disk) counts as torn.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import hiredis

from atlas.protocol import encode_command

# Lines starting with '#' are annotations (Redis writes #TS:<unix time>); redis-check-aof accepts them.
_STAR = 0x2A
_DOLLAR = 0x24
_HASH = 0x23
MAX_ARGUMENTS = 1024 * 1024
MAX_ARGUMENT_LENGTH = 1 << 40


@dataclass
class ScanProblem:
    """Where and why a scan stopped early."""

    offset: int
    reason: str
    torn: bool  # True: the file just ends too early (recoverable by truncation at `offset`)


@dataclass
class ScanResult:
    """What a scan found: the offset after the last good record, and the problem if any."""

    good_until: int
    records: int = 0
    problem: ScanProblem | None = None
    commands_seen: dict[bytes, int] = field(default_factory=dict)


CommandCheck = Callable[[list[bytes]], str | None]


def _header(data: bytes, pos: int, marker: int, what: str) -> tuple[int, int] | ScanProblem:
    """Parse `<marker><digits>\\r\\n` at pos: (number, position after it) or the problem."""
    end = len(data)
    if pos >= end:
        return ScanProblem(pos, f"file ends before the {what}", torn=True)
    if data[pos] != marker:
        return ScanProblem(pos, f"expected '{chr(marker)}', found {data[pos : pos + 1]!r}", torn=False)
    newline = data.find(b"\r\n", pos + 1, pos + 24)
    if newline < 0:
        rest = data[pos + 1 : pos + 24]
        if end <= pos + 24:
            digits = rest[:-1] if rest.endswith(b"\r") else rest
            if not digits or digits.isdigit():
                return ScanProblem(pos, f"file ends inside the {what}", torn=True)
        return ScanProblem(pos, f"bad {what}", torn=False)
    digits = data[pos + 1 : newline]
    if not digits.isdigit():
        return ScanProblem(pos, f"bad {what} {digits!r}", torn=False)
    return int(digits), newline + 2


Record = Callable[[list[bytes]], None]
FAST_CHUNK = 1 << 20


def scan(data: bytes, on_record: Record | None = None, check: CommandCheck | None = None) -> ScanResult:
    """Walk the records of an AOF image; call on_record(argv) for each good one, in order.

    A MULTI block is handed on only once its EXEC is read, so that a torn transaction is never
    applied in part; `good_until` is then the offset of its MULTI. hiredis parses while the file is
    regular; the exact scanner below takes over where it stops, to say what is wrong and where.
    """
    result = ScanResult(good_until=0)
    state = _BlockState()
    _scan_fast(data, on_record, check, result, state)
    if result.good_until < len(data):
        state.pending = None  # re-read from the start of the open block, if any
        _scan_exact(data, on_record, check, result, state)
    return result


class _BlockState:
    __slots__ = ("multi_offset", "pending")

    def __init__(self) -> None:
        self.pending: list[list[bytes]] | None = None
        self.multi_offset = 0


def _frame_end(data: bytes, offset: int, frame: list[bytes]) -> int:
    """Where the record of `frame` starting at `offset` ends, or -1 if a bulk is not followed by
    CRLF (hiredis skips those two bytes unchecked; redis-check-aof does check them)."""
    pos = offset + 3 + len(str(len(frame)))
    for arg in frame:
        length = len(arg)
        pos += length + 3 + (1 if length < 10 else 2 if length < 100 else len(str(length)))
        if not data.startswith(b"\r\n", pos):
            return -1
        pos += 2
    return pos


def _scan_fast(
    data: bytes, on_record: Record | None, check: CommandCheck | None, result: ScanResult, state: _BlockState
) -> None:
    """Parse with hiredis until the first frame that is not a plain command (or the end)."""
    reader = hiredis.Reader()
    offset = 0
    for chunk_start in range(0, len(data), FAST_CHUNK):
        reader.feed(data[chunk_start : chunk_start + FAST_CHUNK])
        while True:
            try:
                frame = reader.gets()
            except hiredis.ProtocolError:
                return
            if frame is False:
                break
            if type(frame) is not list or not frame or any(type(arg) is not bytes for arg in frame):
                return
            end = _frame_end(data, offset, frame)
            if end < 0 or not _accept(frame, offset, on_record, check, result, state):
                return
            offset = end
            if state.pending is None:
                result.good_until = offset


def _accept(
    argv: list[bytes],
    offset: int,
    on_record: Record | None,
    check: CommandCheck | None,
    result: ScanResult,
    state: _BlockState,
) -> bool:
    """Take one well-formed record; False (with result.problem set) if it cannot be."""
    if check is not None:
        refusal = check(argv)
        if refusal is not None:
            result.problem = ScanProblem(offset, refusal, torn=False)
            return False
    name = argv[0].lower()
    if name == b"multi":
        if state.pending is not None:
            result.problem = ScanProblem(offset, "MULTI inside MULTI", torn=False)
            return False
        state.pending = []
        state.multi_offset = offset
        return True
    if name == b"exec":
        block = state.pending
        if block is None:
            result.problem = ScanProblem(offset, "EXEC without MULTI", torn=False)
            return False
        state.pending = None
        if on_record is not None:
            on_record([b"MULTI"])
            for queued in block:
                on_record(queued)
            on_record(argv)
        result.records += len(block) + 2
        return True
    if state.pending is not None:
        state.pending.append(argv)
        return True
    if on_record is not None:
        on_record(argv)
    result.records += 1
    return True


def _read_record(data: bytes, start: int) -> tuple[list[bytes], int] | ScanProblem:
    """One command record at `start`: (argv, the offset after it) or what is wrong with it."""
    parsed = _header(data, start, _STAR, "command header")
    if isinstance(parsed, ScanProblem):
        return parsed
    count, pos = parsed
    if not 1 <= count <= MAX_ARGUMENTS:
        return ScanProblem(start, f"bad argument count {count}", torn=False)
    argv: list[bytes] = []
    end = len(data)
    for _ in range(count):
        parsed = _header(data, pos, _DOLLAR, "argument length")
        if isinstance(parsed, ScanProblem):
            parsed.offset = start  # a record is good or bad as a whole
            return parsed
        length, pos = parsed
        if length > MAX_ARGUMENT_LENGTH:
            return ScanProblem(start, f"bad argument length {length}", torn=False)
        stop = pos + length
        if stop + 2 > end:
            return ScanProblem(start, "file ends inside a command", torn=True)
        if data[stop : stop + 2] != b"\r\n":
            return ScanProblem(start, "argument not followed by CRLF", torn=False)
        argv.append(data[pos:stop])
        pos = stop + 2
    return argv, pos


def _scan_exact(
    data: bytes, on_record: Record | None, check: CommandCheck | None, result: ScanResult, state: _BlockState
) -> None:
    """Byte by byte from result.good_until: records, annotations, and the first problem exactly."""
    pos = result.good_until
    end = len(data)
    while pos < end:
        start = pos
        if data[pos] == _HASH:
            newline = data.find(b"\r\n", pos)
            if newline < 0:
                result.problem = ScanProblem(pos, "file ends inside an annotation", torn=True)
                break
            pos = newline + 2
            if state.pending is None:
                result.good_until = pos
            continue
        if data[pos] == 0 and not data[pos:].strip(b"\0"):
            result.problem = ScanProblem(pos, f"{end - pos} zero bytes at the end", torn=True)
            break
        record = _read_record(data, pos)
        if isinstance(record, ScanProblem):
            result.problem = record
            break
        argv, pos = record
        if not _accept(argv, start, on_record, check, result, state):
            break
        if state.pending is None:
            result.good_until = pos
    if state.pending is not None:
        if result.problem is None:
            result.problem = ScanProblem(state.multi_offset, "file ends inside a MULTI block (no EXEC)", torn=True)
        elif result.problem.torn:
            result.problem.offset = state.multi_offset


def check_file(path: Path, check: CommandCheck | None = None) -> tuple[ScanResult, int]:
    """Scan a file on disk: (result, file size)."""
    data = path.read_bytes()
    return scan(data, check=check), len(data)


# -- writing ---------------------------------------------------------------------------------------


def select_record(db_index: int) -> bytes:
    return encode_command([b"SELECT", b"%d" % db_index])


class FileOps:
    """The system calls the AOF uses (tests substitute failing ones)."""

    pwrite = staticmethod(os.pwrite)
    fdatasync = staticmethod(os.fdatasync)
    ftruncate = staticmethod(os.ftruncate)
    fallocate = staticmethod(os.posix_fallocate)


class AofFile:
    """One AOF file open for appending.

    `size` is the end of the last complete write; `synced` the end of the last successful fsync.
    A write that fails leaves `size` where it was and marks the file `ragged` until the bytes past
    `size` are cut off again.
    """

    def __init__(self, path: Path, ops: FileOps | None = None) -> None:
        self.path = path
        self.ops = ops or FileOps()
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
        self.size = os.fstat(self.fd).st_size
        self.synced = self.size
        self.ragged = False
        self.selected_db = -1  # the SELECT in effect at the end of the file (unknown at open)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Append `data` whole, or raise OSError having cut the file back to `size`."""
        view = memoryview(data)
        offset = self.size
        try:
            if self.ragged:
                self.ops.ftruncate(self.fd, self.size)
                self.ragged = False
            while view:
                written = self.ops.pwrite(self.fd, view, offset)
                if written <= 0:
                    raise OSError(28, "No space left on device")
                offset += written
                view = view[written:]
        except OSError:
            if offset != self.size:
                self.ragged = True
                self.cut_back()
            raise
        self.size = offset

    def cut_back(self) -> bool:
        """Try to remove the bytes past `size` (after a failed write); False if that failed too."""
        try:
            self.ops.ftruncate(self.fd, self.size)
        except OSError:
            return False
        self.ragged = False
        return True

    def truncate(self, size: int) -> None:
        """Cut the file to `size` (rolling back writes that failed)."""
        self.ops.ftruncate(self.fd, size)
        self.size = size
        self.synced = min(self.synced, size)
        self.ragged = False

    def fsync(self) -> None:
        self.ops.fdatasync(self.fd)
        self.synced = self.size

    def check_room(self, length: int) -> None:
        """Raise OSError unless `length` more bytes would fit (the disk-error probe): reserve them
        past the end, then cut them off again (a crash in between leaves zeros, a torn tail)."""
        try:
            self.ops.fallocate(self.fd, self.size, length)
        except OSError as exc:
            if exc.errno in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                return  # the file system cannot tell: the probe's write is the test
            raise
        finally:
            self.ops.ftruncate(self.fd, self.size)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def iter_commands(data: bytes) -> Iterator[list[bytes]]:
    """The commands of a well-formed AOF image (tests and tools)."""
    records: list[list[bytes]] = []
    scan(data, on_record=records.append)
    yield from records
