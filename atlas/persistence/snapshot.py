"""Snapshots: the whole keyspace at one point, every type, absolute TTLs, in a versioned,
checksummed file. This module is the reusable API (the AOF is separate):

    dump_keyspace(store, out, meta)       serialize every database into a binary stream
    load_keyspace(store, source, where)   read it back into empty databases (checks every block)
    write_snapshot(store, path, meta)     dump_keyspace to path.tmp, fsync, rename, fsync the directory
    read_snapshot(store, path)            load_keyspace from a file
    BackgroundSnapshot.start(...)         write_snapshot in a forked child, as Redis's BGSAVE does:
                                          the child sees the keyspace as it was at fork() while the
                                          server goes on serving writes (copy-on-write pages)

`meta` is a small dict stored in the header and returned by the loaders (the AOF layer stores
nothing there; ATLAS on Raft can keep the last applied index and term in it).

Format, version 1 (all integers big-endian):

    b"ATLASSNP" | u16 version | u16 reserved | block: header (msgpack map)
    block*: one database's records, [db, key, type, value, deadline_ms | nil, key, ...] (msgpack)
    block: trailer (msgpack map {"keys": n, "blocks": m})
    block = u32 payload length | u32 crc32(payload) | payload

Types: 0 string (bytes), 1 hash (map), 2 list (array), 3 set (array), 4 sorted set ([member,
score, ...], scores as doubles). A snapshot is good only if every block's checksum matches and the
trailer's counts agree; a loader reports the first bad block's offset.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import io
import json
import os
import signal
import struct
import sys
import time
import zlib
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import msgpack
from sortedcontainers import SortedList

from atlas.persistence.files import PersistenceError, fsync_dir
from atlas.store.keyspace import Store
from atlas.store.types import ZSet

MAGIC = b"ATLASSNP"
VERSION = 1
_BLOCK = struct.Struct(">II")
_PREAMBLE = struct.Struct(">8sHH")
RECORDS_PER_BLOCK = 2048
MAX_BLOCK_BYTES = 1 << 31
STRING, HASH, LIST, SET, ZSET = range(5)


@dataclass
class SnapshotInfo:
    """What a snapshot holds, from its header and trailer."""

    keys: int
    created_ms: int
    meta: dict[str, Any] = field(default_factory=dict)
    size: int = 0


class SnapshotError(PersistenceError):
    """A snapshot file is damaged or not a snapshot."""


# -- writing ----------------------------------------------------------------------------------------


def _encode_value(value: Any) -> tuple[int, Any]:
    kind = type(value)
    if kind is bytes:
        return STRING, value
    if kind is dict:
        return HASH, value
    if kind is deque:
        return LIST, list(value)
    if kind is set:
        return SET, list(value)
    if kind is ZSet:
        flat: list[Any] = []
        for score, member in value.order:
            flat.append(member)
            flat.append(score)
        return ZSET, flat
    raise TypeError(f"cannot snapshot a {kind.__name__}")


def _write_block(out: BinaryIO, packer: msgpack.Packer, payload_object: Any) -> int:
    payload = packer.pack(payload_object)
    out.write(_BLOCK.pack(len(payload), zlib.crc32(payload)))
    out.write(payload)
    return _BLOCK.size + len(payload)


def dump_keyspace(
    store: Store, out: BinaryIO, meta: dict[str, Any] | None = None, key_delay: float = 0.0
) -> SnapshotInfo:
    """Serialize every database of `store` into `out` (a binary stream). `key_delay` seconds are
    slept per key (Redis's rdb-key-save-delay, for tests that need a slow snapshot)."""
    packer = msgpack.Packer(use_bin_type=True)
    created_ms = int(time.time() * 1000)
    header = {"format": "atlas-snapshot", "created_ms": created_ms, "databases": len(store.dbs), "meta": meta or {}}
    out.write(_PREAMBLE.pack(MAGIC, VERSION, 0))
    size = _PREAMBLE.size + _write_block(out, packer, header)
    keys = blocks = 0
    for db in store.dbs:
        if not db.data:
            continue
        expires = db.expires
        records: list[Any] = [db.index]
        for key, value in db.data.items():
            kind, encoded = _encode_value(value)
            records += (key, kind, encoded, expires.get(key))
            keys += 1
            if key_delay:
                time.sleep(key_delay)
            if len(records) >= RECORDS_PER_BLOCK * 4:
                size += _write_block(out, packer, records)
                blocks += 1
                records = [db.index]
        if len(records) > 1:
            size += _write_block(out, packer, records)
            blocks += 1
    size += _write_block(out, packer, {"keys": keys, "blocks": blocks})
    return SnapshotInfo(keys=keys, created_ms=created_ms, meta=meta or {}, size=size)


def write_snapshot(
    store: Store, path: Path, meta: dict[str, Any] | None = None, key_delay: float = 0.0
) -> SnapshotInfo:
    """Write a snapshot file atomically: temp file, fsync, rename, directory fsync."""
    temp = path.with_name(path.name + ".tmp")
    with open(temp, "wb", buffering=1 << 20) as out:
        info = dump_keyspace(store, out, meta, key_delay)
        out.flush()
        os.fsync(out.fileno())
    os.replace(temp, path)
    fsync_dir(path.parent)
    return info


# -- reading ----------------------------------------------------------------------------------------


def _blocks(source: BinaryIO, where: str) -> Iterator[tuple[int, Any]]:
    """(offset, decoded payload) of each block; SnapshotError at the first bad one."""
    preamble = source.read(_PREAMBLE.size)
    if len(preamble) < _PREAMBLE.size or preamble[:8] != MAGIC:
        raise SnapshotError(f"{where} is not an ATLAS snapshot (bad magic at offset 0)")
    _, version, _ = _PREAMBLE.unpack(preamble)
    if version != VERSION:
        raise SnapshotError(f"{where} is snapshot format version {version}; this ATLAS reads version {VERSION}")
    offset = _PREAMBLE.size
    while True:
        head = source.read(_BLOCK.size)
        if not head:
            return
        if len(head) < _BLOCK.size:
            raise SnapshotError(f"{where}: truncated block header at offset {offset}")
        length, crc = _BLOCK.unpack(head)
        if length > MAX_BLOCK_BYTES:
            raise SnapshotError(f"{where}: bad block length {length} at offset {offset}")
        payload = source.read(length)
        if len(payload) < length:
            raise SnapshotError(f"{where}: truncated block at offset {offset}")
        if zlib.crc32(payload) != crc:
            raise SnapshotError(f"{where}: checksum mismatch in the block at offset {offset}")
        try:
            decoded = msgpack.unpackb(payload, raw=False, strict_map_key=False, use_list=True)
        except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
            raise SnapshotError(f"{where}: undecodable block at offset {offset}: {exc}") from None
        yield offset, decoded
        offset += _BLOCK.size + length


def _decode_value(kind: int, encoded: Any) -> Any:
    if kind == STRING:
        if type(encoded) is not bytes:
            raise ValueError("a string value that is not bytes")
        return encoded
    if kind == HASH:
        return encoded
    if kind == LIST:
        return deque(encoded)
    if kind == SET:
        return set(encoded)
    if kind == ZSET:
        zset = ZSet()
        members = encoded[0::2]
        scores = [float(score) for score in encoded[1::2]]
        zset.scores = dict(zip(members, scores, strict=True))
        zset.order = SortedList(zip(scores, members, strict=True))
        return zset
    raise ValueError(f"unknown value type {kind}")


def load_keyspace(store: Store, source: BinaryIO, where: str = "snapshot") -> SnapshotInfo:
    """Read a snapshot stream into `store`, whose databases must be empty. Deadlines are absolute:
    a key whose deadline passed is loaded and then expired by the store as usual."""
    header: dict[str, Any] | None = None
    trailer: dict[str, Any] | None = None
    keys = blocks = 0
    saved_clock = store.clock
    store.clock = _epoch  # nothing counts as expired while loading (expire_at keeps past deadlines)
    try:
        for offset, payload in _blocks(source, where):
            if header is None:
                if not isinstance(payload, dict) or payload.get("format") != "atlas-snapshot":
                    raise SnapshotError(f"{where}: bad header block at offset {offset}")
                header = payload
                continue
            if trailer is not None:
                raise SnapshotError(f"{where}: data after the trailer at offset {offset}")
            if isinstance(payload, dict):
                trailer = payload
                continue
            try:
                db = store.dbs[payload[0]]
                data = db.data
                for position in range(1, len(payload), 4):
                    key, kind, encoded, deadline = payload[position : position + 4]
                    data[key] = encoded if kind == STRING and type(encoded) is bytes else _decode_value(kind, encoded)
                    if deadline is not None:
                        db.expire_at(key, deadline)
                keys += (len(payload) - 1) // 4
            except (IndexError, ValueError, TypeError) as exc:
                raise SnapshotError(f"{where}: bad records in the block at offset {offset}: {exc}") from None
            blocks += 1
    finally:
        store.clock = saved_clock
    if header is None or trailer is None:
        raise SnapshotError(f"{where}: truncated (no {'header' if header is None else 'trailer'})")
    if trailer.get("keys") != keys or trailer.get("blocks") != blocks:
        raise SnapshotError(f"{where}: trailer says {trailer} but {keys} keys in {blocks} blocks were read")
    return SnapshotInfo(keys=keys, created_ms=int(header["created_ms"]), meta=dict(header.get("meta") or {}))


def _epoch() -> float:
    return 0.0


def read_snapshot(store: Store, path: Path) -> SnapshotInfo:
    with open(path, "rb", buffering=1 << 20) as source:
        info = load_keyspace(store, source, str(path))
        info.size = source.tell()
    return info


def verify_snapshot(path: Path) -> SnapshotInfo:
    """Check a snapshot file without keeping what it holds (backup and restore use it)."""
    scratch = Store(databases=_databases_in(path))
    return read_snapshot(scratch, path)


def _databases_in(path: Path) -> int:
    with open(path, "rb") as source:
        for _, payload in _blocks(source, str(path)):
            if isinstance(payload, dict):
                return int(payload.get("databases", 16))
            break
    return 16


def snapshot_bytes(store: Store, meta: dict[str, Any] | None = None) -> bytes:
    """A snapshot in memory (small keyspaces, tests)."""
    out = io.BytesIO()
    dump_keyspace(store, out, meta)
    return out.getvalue()


# -- in a forked child ------------------------------------------------------------------------------

_PR_SET_PDEATHSIG = 1


@dataclass
class SnapshotOutcome:
    """How a background snapshot ended."""

    ok: bool
    seconds: float
    info: SnapshotInfo | None = None
    error: str = ""


class BackgroundSnapshot:
    """write_snapshot() in a forked child. The parent polls() from its event loop."""

    def __init__(self, pid: int, result_fd: int, path: Path) -> None:
        self.pid = pid
        self.path = path
        self.started = time.monotonic()
        self._result_fd = result_fd

    @classmethod
    def start(
        cls, store: Store, path: Path, meta: dict[str, Any] | None = None, key_delay: float = 0.0
    ) -> BackgroundSnapshot:
        read_fd, write_fd = os.pipe()
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()  # or the child would print the parent's buffered output again
        gc.freeze()  # the parent's collector then leaves the shared pages alone
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child; its work is checked through the file it writes
            _child(store, path, meta, key_delay, parent, write_fd)
        os.close(write_fd)
        os.set_blocking(read_fd, False)
        return cls(pid, read_fd, path)

    def poll(self) -> SnapshotOutcome | None:
        """None while the child runs; then how it ended."""
        pid, status = os.waitpid(self.pid, os.WNOHANG)
        if pid == 0:
            return None
        return self._finish(status)

    def wait(self) -> SnapshotOutcome:
        _, status = os.waitpid(self.pid, 0)
        return self._finish(status)

    def kill(self) -> None:
        """Stop the child (shutdown, or a SAVE that replaces it) and remove its temp file."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.pid, 0)
        self._close()
        with contextlib.suppress(FileNotFoundError):
            self.path.with_name(self.path.name + ".tmp").unlink()

    def _finish(self, status: int) -> SnapshotOutcome:
        seconds = time.monotonic() - self.started
        report = b""
        with contextlib.suppress(BlockingIOError, OSError):
            while chunk := os.read(self._result_fd, 65536):
                report += chunk
        self._close()
        code = os.waitstatus_to_exitcode(status)
        try:
            body = json.loads(report) if report else {}
        except ValueError:
            body = {}
        if code == 0 and "keys" in body:
            info = SnapshotInfo(keys=body["keys"], created_ms=body["created_ms"], size=body["size"])
            return SnapshotOutcome(ok=True, seconds=seconds, info=info)
        error = body.get("error") or (f"killed by signal {-code}" if code < 0 else f"exit code {code}")
        return SnapshotOutcome(ok=False, seconds=seconds, error=error)

    def _close(self) -> None:
        if self._result_fd >= 0:
            os.close(self._result_fd)
            self._result_fd = -1
            gc.unfreeze()


def _child(
    store: Store, path: Path, meta: dict[str, Any] | None, key_delay: float, parent: int, write_fd: int
) -> None:  # pragma: no cover
    code = 1
    report: dict[str, Any]
    try:
        # Die with the parent (a kill -9 of the server must not leave a writer behind), and hold
        # no inherited descriptor: client sockets would otherwise stay open until the child ends.
        with contextlib.suppress(Exception):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:
            raise RuntimeError("the server exited before the snapshot began")
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, signal.SIG_DFL)
        os.nice(10)  # the server's commands come first; on 2 cores the child would compete with them
        gc.disable()
        os.closerange(3, write_fd)
        os.closerange(write_fd + 1, 1 << 16)
        info = write_snapshot(store, path, meta, key_delay)
        report = {"keys": info.keys, "created_ms": info.created_ms, "size": info.size}
        code = 0
    except BaseException as exc:  # whatever happened, the parent must hear of it
        report = {"error": f"{type(exc).__name__}: {exc}"}
    try:
        os.write(write_fd, json.dumps(report).encode())
    finally:
        os._exit(code)
