"""Backups of a running node and restores into an empty data dir.

A backup asks the node for a fresh snapshot (BGSAVE, so that little AOF follows it), then copies
the files its manifest names while the node keeps serving. The snapshot and all but the last AOF
never change once named; the last AOF is copied up to its size at that moment and cut back to its
last whole record (a write may be in progress), so the copy is the node's state at one instant.
Files are opened before they are copied: a rewrite that deletes them meanwhile cannot pull them
away. The copy is then loaded, as a restart would load it, to prove it whole, and described in
`backup.json` (written last) with the size and SHA-256 of every file.

A restore checks those checksums, refuses a non-empty target, copies the files in and writes the
manifest last, so that an interrupted restore leaves no manifest and the node refuses to start.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from atlas.commands.session import RuntimeConfig, ServerState
from atlas.persistence.aof import scan
from atlas.persistence.files import DataDir, Manifest, PersistenceError, fsync_dir, write_atomic
from atlas.persistence.recovery import command_check, load_state

BACKUP_NAME = "backup.json"
BACKUP_FORMAT = "atlas-backup"
BACKUP_VERSION = 1
COPY_ATTEMPTS = 5


class NodeClient(Protocol):
    """What a backup needs from the node (a redis-py client fits)."""

    def bgsave(self) -> Any: ...
    def info(self, section: str) -> Any: ...
    def config_get(self, pattern: str) -> Any: ...


@dataclass
class BackupReport:
    dest: Path
    keys: int
    files: dict[str, dict[str, Any]]
    seconds: float


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as source:
        while chunk := source.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _copy_fd(fd: int, target: Path, limit: int | None = None) -> None:
    with open(target, "wb") as out:
        offset = 0
        while limit is None or offset < limit:
            want = 1 << 20 if limit is None else min(1 << 20, limit - offset)
            chunk = os.pread(fd, want, offset)
            if not chunk:
                break
            out.write(chunk)
            offset += len(chunk)
        out.flush()
        os.fsync(out.fileno())


def wait_for_snapshot(client: NodeClient, timeout: float) -> None:
    """BGSAVE on the node and wait until it is done (or one already running is)."""
    saves_before = int(client.info("persistence").get("rdb_saves", 0))
    with contextlib.suppress(Exception):  # "already in progress" is fine: we wait for that one
        client.bgsave()
    deadline = time.monotonic() + timeout
    while True:
        info = client.info("persistence")
        if not int(info.get("rdb_bgsave_in_progress", 0)):
            if int(info.get("rdb_saves", 0)) > saves_before:
                return
            if info.get("rdb_last_bgsave_status") == "err":
                raise PersistenceError(f"the node's snapshot failed: {info.get('atlas_last_snapshot_error', '')}")
        if time.monotonic() > deadline:
            raise PersistenceError(f"the node's snapshot did not finish within {timeout:g} s")
        time.sleep(0.05)


def _copy_state(source: DataDir, dest: Path) -> Manifest:
    """Copy the files of the source's current manifest into dest; retry if a rewrite races us."""
    for _ in range(COPY_ATTEMPTS):
        manifest = source.read_manifest()
        if manifest is None:
            raise PersistenceError(f"{source.path} has no manifest: is it an ATLAS data dir?")
        fds: dict[str, int] = {}
        try:
            for name in manifest.files():
                fds[name] = os.open(source.file(name), os.O_RDONLY)
        except FileNotFoundError:
            for fd in fds.values():
                os.close(fd)
            continue  # a rewrite replaced the files between the manifest and the open: again
        try:
            for name, fd in fds.items():
                last_aof = bool(manifest.aofs) and name == manifest.aofs[-1]
                _copy_fd(fd, dest / name, os.fstat(fd).st_size if last_aof else None)
        finally:
            for fd in fds.values():
                os.close(fd)
        if manifest.aofs:
            _cut_to_last_record(dest / manifest.aofs[-1])
        return manifest
    raise PersistenceError(f"{source.path} kept changing while it was copied ({COPY_ATTEMPTS} attempts)")


def _cut_to_last_record(path: Path) -> None:
    data = path.read_bytes()
    result = scan(data, check=command_check)
    if result.problem is not None and not result.problem.torn:
        raise PersistenceError(f"{path.name} is corrupt at offset {result.problem.offset}: {result.problem.reason}")
    if result.good_until != len(data):
        with open(path, "r+b") as out:
            out.truncate(result.good_until)
            os.fsync(out.fileno())


def backup(
    client: NodeClient | None, data_dir: Path | None, dest: Path, snapshot_timeout: float = 600.0
) -> BackupReport:
    """Copy a node's state into `dest` (which must not exist or be empty)."""
    started = time.monotonic()
    if dest.exists() and any(dest.iterdir()):
        raise PersistenceError(f"backup destination {dest} is not empty")
    if data_dir is None:
        if client is None:
            raise PersistenceError("name the node's data dir or give a way to reach the node")
        data_dir = Path(str(client.config_get("dir").get("dir", "")))
    databases = 16
    if client is not None:
        databases = int(client.config_get("databases").get("databases", 16))
        wait_for_snapshot(client, snapshot_timeout)
    dest.mkdir(parents=True, exist_ok=True)
    manifest = _copy_state(DataDir(data_dir), dest)
    state = ServerState(config=RuntimeConfig(databases=databases))
    report = load_state(state, DataDir(dest), manifest, repair_tail=False)
    files = {name: {"size": (dest / name).stat().st_size, "sha256": _sha256(dest / name)} for name in manifest.files()}
    DataDir(dest).write_manifest(manifest)
    body = {
        "format": BACKUP_FORMAT,
        "version": BACKUP_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "source": str(data_dir),
        "keys": report.keys,
        "manifest": json.loads(manifest.to_bytes()),
        "files": files,
    }
    write_atomic(dest / BACKUP_NAME, (json.dumps(body, indent=1, sort_keys=True) + "\n").encode())
    return BackupReport(dest=dest, keys=report.keys, files=files, seconds=time.monotonic() - started)


def read_backup(src: Path) -> tuple[Manifest, dict[str, dict[str, Any]], dict[str, Any]]:
    """The manifest and file list of a backup, with every file's size and checksum verified."""
    try:
        body = json.loads((src / BACKUP_NAME).read_bytes())
        if body["format"] != BACKUP_FORMAT or body["version"] != BACKUP_VERSION:
            raise ValueError(f"format {body['format']!r} version {body['version']!r}")
        files: dict[str, dict[str, Any]] = body["files"]
        manifest = Manifest.parse(json.dumps(body["manifest"]).encode(), src / BACKUP_NAME)
    except FileNotFoundError:
        raise PersistenceError(f"{src} is not an ATLAS backup (no {BACKUP_NAME})") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise PersistenceError(f"{src / BACKUP_NAME} is not valid: {exc}") from None
    if sorted(files) != sorted(manifest.files()):
        raise PersistenceError(f"{src / BACKUP_NAME} lists other files than its manifest")
    for name, expected in files.items():
        path = src / name
        if not path.is_file():
            raise PersistenceError(f"backup {src} is missing {name}")
        if path.stat().st_size != expected["size"] or _sha256(path) != expected["sha256"]:
            raise PersistenceError(f"backup {src} is damaged: {name} does not match its checksum")
    return manifest, files, body


def restore(src: Path, data_dir: Path) -> Manifest:
    """Restore a backup into an empty (or new) data dir."""
    manifest, files, _ = read_backup(src)
    if data_dir.exists() and any(data_dir.iterdir()):
        raise PersistenceError(f"data dir {data_dir} is not empty: restore only into an empty directory")
    data_dir.mkdir(parents=True, exist_ok=True)
    for name in files:
        temp = data_dir / (name + ".tmp")
        with open(src / name, "rb") as source, open(temp, "wb") as out:
            shutil.copyfileobj(source, out, 1 << 20)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, data_dir / name)
    fsync_dir(data_dir)
    DataDir(data_dir).write_manifest(manifest)
    return manifest
