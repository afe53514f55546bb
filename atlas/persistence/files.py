"""The data directory: file names, the manifest that says which files make up the state, atomic
writes, and the lock that keeps two nodes off one directory.

    <data-dir>/atlas.manifest          which snapshot and which AOF files, in order (JSON, atomic)
    <data-dir>/snapshot.<seq>.atlas    a snapshot: the state before appendonly.<seq>.aof began
    <data-dir>/appendonly.<seq>.aof    AOF files (RESP commands), replayed in order after the snapshot
    <data-dir>/atlas.lock              flock()ed by the running node
    <data-dir>/*.tmp                   files being written (removed at start: never part of a state)

Every file is written to a temporary name, fsynced, renamed, and the directory fsynced, so that a
crash at any instant leaves either the old file or the new one. The manifest is the commit point:
a file that it does not name is an orphan and is removed at the next start.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

MANIFEST_NAME = "atlas.manifest"
LOCK_NAME = "atlas.lock"
MANIFEST_FORMAT = "atlas-manifest"
MANIFEST_VERSION = 1
_SNAPSHOT_NAME = re.compile(r"^snapshot\.(\d+)\.atlas$")
_AOF_NAME = re.compile(r"^appendonly\.(\d+)\.aof$")


class PersistenceError(Exception):
    """The persisted state cannot be used as it is; str() is one line saying what and where."""


def snapshot_name(seq: int) -> str:
    return f"snapshot.{seq:06d}.atlas"


def aof_name(seq: int) -> str:
    return f"appendonly.{seq:06d}.aof"


def sequence_of(name: str) -> int:
    """The sequence number in a snapshot or AOF file name."""
    match = _SNAPSHOT_NAME.match(name) or _AOF_NAME.match(name)
    if match is None:
        raise ValueError(f"not an ATLAS data file name: {name}")
    return int(match.group(1))


def is_data_file(name: str) -> bool:
    return bool(_SNAPSHOT_NAME.match(name) or _AOF_NAME.match(name) or name.endswith(".tmp"))


# -- durable file operations ---------------------------------------------------------------------


def fsync_dir(path: Path) -> None:
    """Make a rename or a new file in `path` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes) -> None:
    """Replace `path` with `data`: temp file, fsync, rename, directory fsync."""
    temp = path.with_name(path.name + ".tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temp, path)
    fsync_dir(path.parent)


def file_crc32(path: Path, limit: int | None = None) -> tuple[int, int]:
    """(crc32, size) of the first `limit` bytes of a file (all of it by default)."""
    crc = 0
    size = 0
    with open(path, "rb") as source:
        while limit is None or size < limit:
            chunk = source.read(1 << 20 if limit is None else min(1 << 20, limit - size))
            if not chunk:
                break
            crc = zlib.crc32(chunk, crc)
            size += len(chunk)
    return crc, size


# -- the manifest ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Manifest:
    """The files that make up the persisted state: a snapshot (or none) then AOF files in order."""

    snapshot: str | None
    aofs: tuple[str, ...]
    next_seq: int

    def files(self) -> list[str]:
        return ([self.snapshot] if self.snapshot else []) + list(self.aofs)

    def to_bytes(self) -> bytes:
        body = {
            "format": MANIFEST_FORMAT,
            "version": MANIFEST_VERSION,
            "snapshot": self.snapshot,
            "aof": list(self.aofs),
            "next_seq": self.next_seq,
        }
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
        body["crc32"] = zlib.crc32(canonical.encode())
        return (json.dumps(body, sort_keys=True, indent=1) + "\n").encode()

    @classmethod
    def parse(cls, data: bytes, where: Path) -> Manifest:
        try:
            body = json.loads(data)
            crc = body.pop("crc32")
            canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
            if zlib.crc32(canonical.encode()) != crc:
                raise ValueError("checksum mismatch")
            if body["format"] != MANIFEST_FORMAT:
                raise ValueError(f"format is {body['format']!r}")
            if body["version"] != MANIFEST_VERSION:
                raise ValueError(f"version {body['version']} is not supported (this ATLAS reads {MANIFEST_VERSION})")
            snapshot = body["snapshot"]
            aofs = tuple(body["aof"])
            next_seq = int(body["next_seq"])
            for name in [*([snapshot] if snapshot else []), *aofs]:
                if not isinstance(name, str) or sequence_of(name) >= next_seq:
                    raise ValueError(f"bad file entry {name!r}")
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise PersistenceError(f"ATLAS manifest {where} is not valid: {exc}") from None
        return cls(snapshot=snapshot, aofs=aofs, next_seq=next_seq)


class DataDir:
    """One node's data directory."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.manifest_path = path / MANIFEST_NAME
        self._lock_fd: int | None = None

    def file(self, name: str) -> Path:
        return self.path / name

    def lock(self) -> None:
        """Take the directory for this process; a second node on it is refused."""
        self.path.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise PersistenceError(f"data dir {self.path} is in use by another ATLAS process") from None
            raise
        os.set_inheritable(fd, False)
        self._lock_fd = fd

    def unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def read_manifest(self) -> Manifest | None:
        try:
            data = self.manifest_path.read_bytes()
        except FileNotFoundError:
            return None
        return Manifest.parse(data, self.manifest_path)

    def write_manifest(self, manifest: Manifest) -> None:
        write_atomic(self.manifest_path, manifest.to_bytes())

    def data_files(self) -> Iterator[str]:
        for entry in sorted(os.listdir(self.path)):
            if is_data_file(entry):
                yield entry

    def remove_orphans(self, manifest: Manifest) -> list[str]:
        """Delete the data files the manifest does not name (interrupted writes, replaced files)."""
        keep = set(manifest.files())
        removed = []
        for name in self.data_files():
            if name not in keep:
                with contextlib.suppress(FileNotFoundError):
                    (self.path / name).unlink()
                removed.append(name)
        if removed:
            fsync_dir(self.path)
        return removed

    def initialise(self) -> Manifest:
        """The manifest of a new or existing directory. A directory with ATLAS files but no manifest
        is refused, unless they are the leftovers of an interrupted first start (empty AOFs)."""
        manifest = self.read_manifest()
        if manifest is not None:
            return manifest
        leftovers = list(self.data_files())
        for name in leftovers:
            path = self.path / name
            if not (name.endswith(".tmp") or (_AOF_NAME.match(name) and path.stat().st_size == 0)):
                raise PersistenceError(
                    f"data dir {self.path} holds {name} but no {MANIFEST_NAME}: "
                    "restore it with `manage.py atlas_restore` or move the files away"
                )
        for name in leftovers:
            (self.path / name).unlink()
        manifest = Manifest(snapshot=None, aofs=(), next_seq=1)
        self.write_manifest(manifest)
        return manifest
