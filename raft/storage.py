"""Durable Raft state: log segments with a CRC on every record, hard state, checksummed snapshots.

Layout of a data directory:

    LOCK                      held (flock) while a FileStorage has it open
    hardstate                 hard state written aside (atomic rename) before a suffix truncation
    wal/00000000000000000001.seg, ...   log segments, in order
    snap/<index>-<term>.snap  snapshots (the newest two are kept)

A segment is an 8-byte magic followed by records: u32 length, u32 CRC-32 of what follows,
one type byte, a msgpack payload. ENTRY records hold log entries in index order; HARD_STATE
records hold (seq, term, vote, commit) and the one with the highest seq wins. Hard state rides
in the log so that one fsync covers a whole Ready: entries and the vote or term they depend on.
Every new segment starts with the current hard state, and before a conflicting suffix is cut
(which could cut hard-state records with it) the hard state is first written to `hardstate`, so
term and vote are never lost.

On open, a record that is cut short or fails its CRC at the tail of the last segment is a write
that never completed (the fsync did not return, so nothing was acknowledged): it is truncated
away. Anything else (a bad record with valid records after it, a bad record in an older
segment, an index gap, a snapshot that fails its checksum, a commit index beyond the log) is
refused with StorageCorrupted naming the file and offset: starting from it could forget
acknowledged data.
"""

from __future__ import annotations

import bisect
import contextlib
import fcntl
import logging
import os
import struct
import zlib
from array import array
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, BinaryIO, Protocol

import msgpack

from raft.core.codec import CodecError, entry_from_list, entry_to_list, meta_from_list, meta_to_list
from raft.core.rawnode import Ready
from raft.core.types import Entry, HardState, PersistentState, Snapshot, SnapshotMeta

logger = logging.getLogger(__name__)

SEGMENT_MAGIC = b"HLRAFT\x01\n"
SNAPSHOT_MAGIC = b"HLSNAP\x01\n"
HARD_STATE_MAGIC = b"HLHARD\x01\n"
RECORD_HEADER = struct.Struct("<II")  # length of (type + payload), CRC-32 of (type + payload)
SNAPSHOT_HEADER = struct.Struct("<IIQ")  # CRC-32 of (meta + data), meta length, data length
RECORD_ENTRY = 1
RECORD_HARD_STATE = 2
MAX_RECORD_BYTES = 1 << 30
DEFAULT_SEGMENT_BYTES = 64 * 1024 * 1024


class StorageError(Exception):
    """Storage cannot do what was asked (bad argument, directory in use, IO failure)."""


class StorageCorrupted(StorageError):
    """The data directory holds damage that is not a torn tail; refusing to start from it."""

    def __init__(self, path: Path, offset: int | None, reason: str) -> None:
        self.path = path
        self.offset = offset
        where = f"{path}" if offset is None else f"{path} at byte {offset}"
        super().__init__(
            f"raft storage is corrupted: {where}: {reason}; refusing to start (restore this node from a peer)"
        )


class Storage(Protocol):
    """What a driver needs from storage; FileStorage and MemoryStorage both provide it."""

    def load(self) -> PersistentState: ...

    def persist(self, rd: Ready) -> None: ...

    def save_snapshot(self, snapshot: Snapshot) -> None: ...

    def compact(self, index: int) -> None: ...


def _pack(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)  # type: ignore[no-any-return]


def _record(kind: int, payload: bytes) -> bytes:
    body = bytes((kind,)) + payload
    return RECORD_HEADER.pack(len(body), zlib.crc32(body)) + body


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _hard_state_from(payload: Any) -> tuple[int, HardState]:
    if type(payload) is not list or len(payload) != 4 or any(type(v) is not int or v < 0 for v in payload):
        raise CodecError(f"bad hard state record {payload!r}")
    return payload[0], HardState(payload[1], payload[2], payload[3])


class _Segment:
    """One open or closed segment file: its number, first index and the offset of each entry."""

    __slots__ = ("first_index", "number", "offsets", "path", "size")

    def __init__(self, number: int, path: Path, first_index: int) -> None:
        self.number = number
        self.path = path
        self.first_index = first_index
        self.offsets = array("q")  # byte offset of entry first_index + i
        self.size = len(SEGMENT_MAGIC)


def _parse_record(buf: bytes, pos: int) -> tuple[int, bytes, int] | None:
    """(type, payload, next position) of a valid record at `pos`, or None."""
    end = len(buf)
    if pos + RECORD_HEADER.size > end:
        return None
    length, crc = RECORD_HEADER.unpack_from(buf, pos)
    start = pos + RECORD_HEADER.size
    if length < 1 or length > MAX_RECORD_BYTES or start + length > end:
        return None
    body = buf[start : start + length]
    if zlib.crc32(body) != crc:
        return None
    return body[0], body[1:], start + length


def _valid_record_after(buf: bytes, pos: int) -> int | None:
    """The offset of a valid record anywhere after `pos` (evidence of corruption, not a torn tail)."""
    for candidate in range(pos + 1, len(buf) - RECORD_HEADER.size):
        parsed = _parse_record(buf, candidate)
        if parsed is not None and parsed[0] in (RECORD_ENTRY, RECORD_HARD_STATE):
            return candidate
    return None


class FileStorage:
    """Raft state in a directory; see the module docstring for the format and recovery rules.

    Not thread-safe: a driver calls it from one thread at a time (its persistence thread).
    """

    def __init__(self, path: Path, *, segment_bytes: int, sync: bool) -> None:
        self.path = path
        self.wal_dir = path / "wal"
        self.snap_dir = path / "snap"
        self.segment_bytes = segment_bytes
        self.sync = sync
        self._lock_file: BinaryIO | None = None
        self._segments: list[_Segment] = []
        self._file: BinaryIO | None = None
        self._hard_state = HardState()
        self._hs_seq = 0
        self._snapshot: Snapshot | None = None
        self._entries: list[Entry] = []
        self._first_index = 1  # index of self._entries[0]
        self.syncs = 0  # fsync calls on the log, for benchmarks and tests

    # --- opening and recovery ------------------------------------------------------------------

    @classmethod
    def open(cls, path: str | Path, *, segment_bytes: int = DEFAULT_SEGMENT_BYTES, sync: bool = True) -> FileStorage:
        """Open (creating if needed) and recover a data directory. Raises StorageCorrupted, StorageError."""
        if segment_bytes < 4096:
            raise StorageError(f"segment_bytes must be at least 4096, got {segment_bytes}")
        storage = cls(Path(path), segment_bytes=segment_bytes, sync=sync)
        try:
            storage._lock()
            storage._recover()
        except BaseException:
            storage.close()
            raise
        return storage

    def _lock(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        self.wal_dir.mkdir(exist_ok=True)
        self.snap_dir.mkdir(exist_ok=True)
        lock = open(self.path / "LOCK", "ab")  # noqa: SIM115 - held open until close()
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            lock.close()
            raise StorageError(f"{self.path} is in use by another process (LOCK is held)") from None
        self._lock_file = lock

    def _recover(self) -> None:
        self._snapshot = self._load_snapshot()
        side_seq, side_hs = self._load_side_hard_state()
        best_seq, best_hs = side_seq, side_hs
        entries: list[Entry] = []
        names = sorted(p for p in self.wal_dir.iterdir() if p.suffix == ".seg")
        for position, seg_path in enumerate(names):
            last = position == len(names) - 1
            seg, seg_entries, hard_states = self._read_segment(seg_path, last=last, previous=entries)
            entries.extend(seg_entries)
            self._segments.append(seg)
            for seq, hs in hard_states:
                if seq >= best_seq:
                    best_seq, best_hs = seq, hs
        self._hs_seq, self._hard_state = best_seq, best_hs
        snap_meta = self._snapshot.meta if self._snapshot is not None else SnapshotMeta()
        if entries and entries[0].index > snap_meta.index + 1:
            raise StorageCorrupted(
                self.wal_dir, None, f"log starts at {entries[0].index} but the snapshot ends at {snap_meta.index}"
            )
        stale = self._conflicts_with_snapshot(entries, snap_meta) or bool(
            entries and entries[-1].index < snap_meta.index
        )
        if stale:
            # A snapshot install was interrupted before the log was reset: the old log is another
            # history, or ends before the snapshot (appending after the snapshot would leave a gap).
            logger.warning(
                "discarding log that does not continue snapshot %d/%d",
                snap_meta.index,
                snap_meta.term,
                extra={"action": "raft_storage_reset_log"},
            )
            entries = []
            self._reset_log(snap_meta.index + 1)
        self._entries = [e for e in entries if e.index > snap_meta.index] if entries else []
        self._first_index = snap_meta.index + 1
        running = entries[0].index if entries else snap_meta.index + 1
        for seg in self._segments:  # a segment holding only hard state starts where the log goes on
            if seg.offsets:
                running = seg.first_index + len(seg.offsets)
            else:
                seg.first_index = running
        last_index = self.last_index()
        if self._hard_state.commit > last_index:
            raise StorageCorrupted(
                self.path,
                None,
                f"hard state commit {self._hard_state.commit} is beyond the end of the log ({last_index})",
            )
        if not self._segments:
            self._new_segment(self._first_index)
        else:
            self._open_tail()

    @staticmethod
    def _conflicts_with_snapshot(entries: list[Entry], meta: SnapshotMeta) -> bool:
        if not entries or meta.index == 0:
            return False
        first = entries[0].index
        if meta.index < first:
            return False
        if meta.index - first < len(entries):
            return entries[meta.index - first].term != meta.term
        return False  # the log ends before the snapshot: all of it is covered

    def _read_segment(
        self, seg_path: Path, *, last: bool, previous: list[Entry]
    ) -> tuple[_Segment, list[Entry], list[tuple[int, HardState]]]:
        try:
            number = int(seg_path.stem)
        except ValueError:
            raise StorageCorrupted(seg_path, None, "segment file name is not a number") from None
        buf = seg_path.read_bytes()
        if not buf.startswith(SEGMENT_MAGIC):
            if not (last and len(buf) < len(SEGMENT_MAGIC) and SEGMENT_MAGIC.startswith(buf)):
                raise StorageCorrupted(seg_path, 0, "not a HELIOS raft segment (bad magic)")
            buf = b""  # created but its header never reached the disk
        entries: list[Entry] = []
        hard_states: list[tuple[int, HardState]] = []
        expected = previous[-1].index + 1 if previous else 0
        seg = _Segment(number, seg_path, expected)
        pos = len(SEGMENT_MAGIC) if buf else 0
        while pos < len(buf):
            parsed = _parse_record(buf, pos)
            if parsed is None:
                self._truncate_torn_tail(seg_path, buf, pos, last=last)
                break
            kind, payload, next_pos = parsed
            entry, hard_state = self._decode_record(seg_path, pos, kind, payload)
            if entry is not None:
                if expected and entry.index != expected:
                    raise StorageCorrupted(seg_path, pos, f"entry {entry.index} where {expected} was expected")
                if not entries:
                    seg.first_index = entry.index
                entries.append(entry)
                seg.offsets.append(pos)
                expected = entry.index + 1
            if hard_state is not None:
                hard_states.append(hard_state)
            pos = next_pos
        if not buf:
            with open(seg_path, "wb") as handle:
                handle.write(SEGMENT_MAGIC)
                os.fsync(handle.fileno())
            pos = len(SEGMENT_MAGIC)
        seg.size = pos
        if not entries and previous:
            seg.first_index = previous[-1].index + 1
        return seg, entries, hard_states

    @staticmethod
    def _truncate_torn_tail(seg_path: Path, buf: bytes, pos: int, *, last: bool) -> None:
        """Cut an incomplete last write; anything else unreadable is corruption."""
        if not last or _valid_record_after(buf, pos) is not None:
            raise StorageCorrupted(seg_path, pos, "record fails its CRC or is cut short, and is not the tail")
        logger.warning(
            "truncating torn tail of %s at byte %d (%d bytes)",
            seg_path,
            pos,
            len(buf) - pos,
            extra={"action": "raft_storage_torn_tail"},
        )
        with open(seg_path, "r+b") as handle:
            handle.truncate(pos)
            os.fsync(handle.fileno())

    @staticmethod
    def _decode_record(
        seg_path: Path, pos: int, kind: int, payload: bytes
    ) -> tuple[Entry | None, tuple[int, HardState] | None]:
        try:
            value = msgpack.unpackb(payload, raw=False)
            if kind == RECORD_ENTRY:
                return entry_from_list(value), None
            if kind == RECORD_HARD_STATE:
                return None, _hard_state_from(value)
        except (CodecError, ValueError, msgpack.ExtraData) as exc:
            raise StorageCorrupted(seg_path, pos, f"record passes its CRC but does not decode: {exc}") from None
        raise StorageCorrupted(seg_path, pos, f"unknown record type {kind}")

    def _load_side_hard_state(self) -> tuple[int, HardState]:
        path = self.path / "hardstate"
        with contextlib.suppress(FileNotFoundError):
            (self.path / "hardstate.tmp").unlink()
        try:
            buf = path.read_bytes()
        except FileNotFoundError:
            return 0, HardState()
        if not buf.startswith(HARD_STATE_MAGIC):
            raise StorageCorrupted(path, 0, "bad magic")
        parsed = _parse_record(buf, len(HARD_STATE_MAGIC))
        if parsed is None or parsed[0] != RECORD_HARD_STATE:
            raise StorageCorrupted(path, len(HARD_STATE_MAGIC), "hard state fails its CRC")
        try:
            return _hard_state_from(msgpack.unpackb(parsed[1], raw=False))
        except (CodecError, ValueError) as exc:
            raise StorageCorrupted(path, len(HARD_STATE_MAGIC), str(exc)) from None

    def _load_snapshot(self) -> Snapshot | None:
        for tmp in self.snap_dir.glob("*.tmp"):
            tmp.unlink()  # a snapshot whose write never finished
        files = sorted(self.snap_dir.glob("*.snap"), key=lambda p: int(p.name.split("-")[0]))
        if not files:
            return None
        return self._read_snapshot(files[-1])

    @staticmethod
    def _read_snapshot(path: Path) -> Snapshot:
        buf = path.read_bytes()
        head = len(SNAPSHOT_MAGIC) + SNAPSHOT_HEADER.size
        if not buf.startswith(SNAPSHOT_MAGIC) or len(buf) < head:
            raise StorageCorrupted(path, 0, "not a HELIOS raft snapshot (bad magic or too short)")
        crc, meta_len, data_len = SNAPSHOT_HEADER.unpack_from(buf, len(SNAPSHOT_MAGIC))
        if len(buf) != head + meta_len + data_len:
            raise StorageCorrupted(
                path, head, f"size {len(buf)} does not match the header ({head + meta_len + data_len})"
            )
        body = buf[head:]
        if zlib.crc32(body) != crc:
            raise StorageCorrupted(path, head, "snapshot fails its checksum")
        try:
            meta = meta_from_list(msgpack.unpackb(body[:meta_len], raw=False))
        except (CodecError, ValueError) as exc:
            raise StorageCorrupted(path, head, f"snapshot metadata does not decode: {exc}") from None
        return Snapshot(meta, body[meta_len:])

    # --- reading -------------------------------------------------------------------------------

    def load(self) -> PersistentState:
        """What the node restarts from: hard state, newest snapshot, the entries after it."""
        return PersistentState(self._hard_state, self._snapshot, list(self._entries))

    def last_index(self) -> int:
        snap_index = self._snapshot.meta.index if self._snapshot is not None else 0
        return self._first_index + len(self._entries) - 1 if self._entries else max(snap_index, self._first_index - 1)

    def hard_state(self) -> HardState:
        return self._hard_state

    def snapshot(self) -> Snapshot | None:
        return self._snapshot

    def is_empty(self) -> bool:
        return not self._entries and self._snapshot is None and self._hard_state == HardState()

    # --- writing -------------------------------------------------------------------------------

    def persist(self, rd: Ready) -> None:
        """Make a Ready durable (one fsync when it must sync) and mark it persisted."""
        self.save(hard_state=rd.hard_state, entries=rd.entries, snapshot=rd.snapshot, sync=rd.must_sync)
        rd.mark_persisted()

    def save(
        self,
        *,
        hard_state: HardState | None = None,
        entries: Sequence[Entry] = (),
        snapshot: Snapshot | None = None,
        sync: bool = True,
    ) -> None:
        """Write a snapshot received from the leader, entries, hard state, in that order; then fsync once."""
        if snapshot is not None:
            self._install_snapshot(snapshot)
        buf = bytearray()
        touched: set[int] = set()
        if entries:
            self._append(entries, buf, touched)
        if hard_state is not None and hard_state != self._hard_state:
            self._hs_seq += 1
            self._hard_state = hard_state
            buf += _record(RECORD_HARD_STATE, _pack([self._hs_seq, *hard_state]))
        self._write(buf)
        if sync and self.sync and (touched or buf or snapshot is not None):
            self._fsync_tail()

    def initialize(self, state: PersistentState) -> None:
        """Write a starting state (bootstrap_state() of a founding member) into an empty directory."""
        if not self.is_empty():
            raise StorageError(f"{self.path} already holds raft state; refusing to bootstrap over it")
        if state.snapshot is not None:
            self.save_snapshot(state.snapshot)
        self.save(hard_state=state.hard_state, entries=state.entries)

    def _write(self, buf: bytearray) -> None:
        if not buf:
            return
        assert self._file is not None
        self._file.write(buf)
        self._file.flush()
        self._segments[-1].size += len(buf)

    def _fsync_tail(self) -> None:
        assert self._file is not None
        os.fdatasync(self._file.fileno())
        self.syncs += 1

    def _append(self, entries: Sequence[Entry], buf: bytearray, touched: set[int]) -> None:
        first = entries[0].index
        last = self.last_index()
        if first <= last:
            if first < self._first_index:
                raise StorageError(f"cannot overwrite entry {first}: it is compacted into the snapshot")
            self._write(buf)
            buf.clear()
            self._truncate_from(first)
        elif first != last + 1:
            raise StorageError(f"append at {first} would leave a gap after {last}")
        seg = self._segments[-1]
        pos = seg.size + len(buf)
        for entry in entries:
            if pos >= self.segment_bytes and seg.offsets:
                self._write(buf)
                buf.clear()
                self._roll(entry.index)
                seg = self._segments[-1]
                pos = seg.size
            record = _record(RECORD_ENTRY, _pack(entry_to_list(entry)))
            if not seg.offsets:
                seg.first_index = entry.index
            seg.offsets.append(pos)
            buf += record
            pos += len(record)
        touched.add(seg.number)
        self._entries.extend(entries)

    def _truncate_from(self, index: int) -> None:
        """Cut the stored log from `index` on (a conflicting suffix), keeping term and vote safe."""
        self._write_side_hard_state()
        del self._entries[index - self._first_index :]
        firsts = [s.first_index for s in self._segments]
        keep = bisect.bisect_right(firsts, index) - 1
        while len(self._segments) > max(keep + 1, 1):
            doomed = self._segments.pop()
            if self._file is not None:
                self._file.close()
                self._file = None
            doomed.path.unlink()
        seg = self._segments[-1]
        cut = index - seg.first_index
        if 0 <= cut < len(seg.offsets):
            offset = seg.offsets[cut]
            del seg.offsets[cut:]
        else:
            offset = seg.size
        if self._file is not None:
            self._file.close()
        with open(seg.path, "r+b") as handle:
            handle.truncate(offset)
            os.fsync(handle.fileno())
        seg.size = offset
        if not seg.offsets:
            seg.first_index = index
        _fsync_dir(self.wal_dir)
        self._open_tail()

    def _write_side_hard_state(self) -> None:
        path = self.path / "hardstate"
        tmp = self.path / "hardstate.tmp"
        body = _record(RECORD_HARD_STATE, _pack([self._hs_seq, *self._hard_state]))
        with open(tmp, "wb") as handle:
            handle.write(HARD_STATE_MAGIC + body)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        _fsync_dir(self.path)

    def _segment_path(self, number: int) -> Path:
        return self.wal_dir / f"{number:020d}.seg"

    def _new_segment(self, first_index: int) -> None:
        number = self._segments[-1].number + 1 if self._segments else 1
        path = self._segment_path(number)
        with open(path, "wb") as handle:
            handle.write(SEGMENT_MAGIC)
            handle.write(_record(RECORD_HARD_STATE, _pack([self._hs_seq, *self._hard_state])))
            handle.flush()
            os.fsync(handle.fileno())
        _fsync_dir(self.wal_dir)
        seg = _Segment(number, path, first_index)
        seg.size = path.stat().st_size
        self._segments.append(seg)
        self._open_tail()

    def _roll(self, first_index: int) -> None:
        if self.sync:
            self._fsync_tail()
        self._new_segment(first_index)

    def _open_tail(self) -> None:
        if self._file is not None:
            self._file.close()
        self._file = open(self._segments[-1].path, "ab")  # noqa: SIM115 - kept open for appends

    def _reset_log(self, first_index: int) -> None:
        """Drop every segment and start an empty log at `first_index` (after a snapshot install)."""
        if self._file is not None:
            self._file.close()
            self._file = None
        for seg in self._segments:
            seg.path.unlink()
        self._segments = []
        self._new_segment(first_index)

    def _install_snapshot(self, snapshot: Snapshot) -> None:
        self.save_snapshot(snapshot)
        meta = snapshot.meta
        offset = meta.index - self._first_index
        if 0 <= offset < len(self._entries) and self._entries[offset].term == meta.term:
            self.compact(meta.index)  # our log goes on from the snapshot: keep what follows it
            return
        self._entries = []
        self._first_index = meta.index + 1
        self._reset_log(meta.index + 1)

    def save_snapshot(self, snapshot: Snapshot) -> None:
        """Write a snapshot durably (temp file, fsync, rename, fsync the directory); keep the newest two."""
        meta_bytes = _pack(meta_to_list(snapshot.meta))
        body_crc = zlib.crc32(snapshot.data, zlib.crc32(meta_bytes))
        header = SNAPSHOT_MAGIC + SNAPSHOT_HEADER.pack(body_crc, len(meta_bytes), len(snapshot.data))
        name = f"{snapshot.meta.index:020d}-{snapshot.meta.term:020d}.snap"
        tmp = self.snap_dir / (name + ".tmp")
        with open(tmp, "wb") as handle:
            handle.write(header)
            handle.write(meta_bytes)
            handle.write(snapshot.data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.snap_dir / name)
        _fsync_dir(self.snap_dir)
        if self._snapshot is None or snapshot.meta.index >= self._snapshot.meta.index:
            self._snapshot = snapshot
        files = sorted(self.snap_dir.glob("*.snap"), key=lambda p: int(p.name.split("-")[0]))
        for old in files[:-2]:
            old.unlink()

    def compact(self, index: int) -> None:
        """Forget stored entries up to `index` (whole segments only). A snapshot at >= index must be saved."""
        snap_index = self._snapshot.meta.index if self._snapshot is not None else 0
        if index > snap_index:
            raise StorageError(f"cannot compact to {index}: the newest saved snapshot is at {snap_index}")
        if index >= self._first_index:
            del self._entries[: index - self._first_index + 1]
            self._first_index = index + 1
        removed = False
        while len(self._segments) > 1 and self._segments[1].first_index <= index + 1:
            self._segments.pop(0).path.unlink()
            removed = True
        if removed:
            _fsync_dir(self.wal_dir)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._lock_file is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._lock_file.fileno(), fcntl.LOCK_UN)
            self._lock_file.close()
            self._lock_file = None

    def __enter__(self) -> FileStorage:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class MemoryStorage:
    """The same contract in memory: what the simulator treats as a node's disk.

    What was saved survives a simulated crash; the node's core and anything not yet saved do not.
    """

    def __init__(self) -> None:
        self._hard_state = HardState()
        self._snapshot: Snapshot | None = None
        self._entries: list[Entry] = []
        self._first_index = 1
        self.saves = 0

    def load(self) -> PersistentState:
        return PersistentState(self._hard_state, self._snapshot, list(self._entries))

    def initialize(self, state: PersistentState) -> None:
        self._snapshot = state.snapshot
        if state.snapshot is not None:
            self._first_index = state.snapshot.meta.index + 1
        self.save(hard_state=state.hard_state, entries=state.entries)

    def last_index(self) -> int:
        if self._entries:
            return self._entries[-1].index
        return self._first_index - 1

    def entries(self) -> list[Entry]:
        return list(self._entries)

    def hard_state(self) -> HardState:
        return self._hard_state

    def snapshot(self) -> Snapshot | None:
        return self._snapshot

    def persist(self, rd: Ready) -> None:
        self.save(hard_state=rd.hard_state, entries=rd.entries, snapshot=rd.snapshot)
        rd.mark_persisted()

    def save(
        self,
        *,
        hard_state: HardState | None = None,
        entries: Sequence[Entry] | Iterable[Entry] = (),
        snapshot: Snapshot | None = None,
        sync: bool = True,
    ) -> None:
        self.saves += 1
        if snapshot is not None:
            meta = snapshot.meta
            self._snapshot = snapshot
            offset = meta.index - self._first_index
            if 0 <= offset < len(self._entries) and self._entries[offset].term == meta.term:
                del self._entries[: offset + 1]
            else:
                self._entries = []
            self._first_index = meta.index + 1
        entries = list(entries)
        if entries:
            first = entries[0].index
            if first < self._first_index:
                raise StorageError(f"cannot overwrite entry {first}: it is compacted into the snapshot")
            if first > self.last_index() + 1:
                raise StorageError(f"append at {first} would leave a gap after {self.last_index()}")
            del self._entries[first - self._first_index :]
            self._entries.extend(entries)
        if hard_state is not None:
            self._hard_state = hard_state

    def save_snapshot(self, snapshot: Snapshot) -> None:
        if self._snapshot is None or snapshot.meta.index >= self._snapshot.meta.index:
            self._snapshot = snapshot

    def compact(self, index: int) -> None:
        snap_index = self._snapshot.meta.index if self._snapshot is not None else 0
        if index > snap_index:
            raise StorageError(f"cannot compact to {index}: the newest saved snapshot is at {snap_index}")
        if index >= self._first_index:
            del self._entries[: index - self._first_index + 1]
            self._first_index = index + 1
