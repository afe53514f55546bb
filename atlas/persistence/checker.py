"""`atlas_check_aof`: say whether an AOF file is whole, where its first bad record is, and cut it
there with --fix. A data directory (or its manifest) checks every file the manifest names."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from atlas.persistence.aof import ScanProblem, scan
from atlas.persistence.files import MANIFEST_NAME, DataDir, PersistenceError
from atlas.persistence.recovery import command_check
from atlas.persistence.snapshot import SnapshotError, verify_snapshot


class Output(Protocol):
    def write(self, text: str, /) -> object: ...


@dataclass
class AofCheck:
    """The verdict on one AOF file."""

    path: Path
    size: int
    good_until: int
    records: int
    problem: ScanProblem | None

    @property
    def valid(self) -> bool:
        return self.problem is None


def check_aof(path: Path) -> AofCheck:
    data = path.read_bytes()
    result = scan(data, check=command_check)
    return AofCheck(path, len(data), result.good_until, result.records, result.problem)


def fix_aof(check: AofCheck) -> int:
    """Truncate the file after its last good record; return how many bytes were removed."""
    fd = os.open(check.path, os.O_WRONLY)
    try:
        os.ftruncate(fd, check.good_until)
        os.fsync(fd)
    finally:
        os.close(fd)
    return check.size - check.good_until


def files_to_check(path: Path) -> tuple[list[Path], Path | None]:
    """(AOF files, snapshot) named by PATH: one AOF file, or a data dir / manifest."""
    if path.is_dir() or path.name == MANIFEST_NAME:
        datadir = DataDir(path if path.is_dir() else path.parent)
        manifest = datadir.read_manifest()
        if manifest is None:
            raise PersistenceError(f"{datadir.path} has no {MANIFEST_NAME}")
        snapshot = datadir.file(manifest.snapshot) if manifest.snapshot else None
        return [datadir.file(name) for name in manifest.aofs], snapshot
    return [path], None


def run(path: Path, fix: bool, out: Output) -> int:
    """Check (and with fix, repair) what PATH names; the exit status: 0 valid or fixed, 1 not."""
    aofs, snapshot = files_to_check(path)
    if fix:  # never cut a file a running node is appending to
        datadir = DataDir(aofs[0].parent if aofs else path)
        datadir.lock()
        try:
            return _check(aofs, snapshot, fix, out)
        finally:
            datadir.unlock()
    return _check(aofs, snapshot, fix, out)


def _check(aofs: list[Path], snapshot: Path | None, fix: bool, out: Output) -> int:
    status = 0
    if snapshot is not None:
        try:
            info = verify_snapshot(snapshot)
            out.write(f"Snapshot {snapshot} is valid: {info.keys} keys\n")
        except (SnapshotError, OSError) as exc:
            out.write(f"Snapshot is not valid: {exc}\n")
            status = 1
    for aof in aofs:
        check = check_aof(aof)
        out.write(
            f"AOF analyzed: filename={aof}, size={check.size}, ok_up_to={check.good_until}, "
            f"records={check.records}, diff={check.size - check.good_until}\n"
        )
        problem = check.problem
        if problem is None:
            out.write(f"AOF {aof} is valid\n")
            continue
        kind = "torn tail (a write cut short)" if problem.torn else "corruption"
        out.write(f"AOF {aof} is not valid: {kind} at offset {problem.offset}: {problem.reason}\n")
        if fix:
            removed = fix_aof(check)
            out.write(f"Successfully truncated AOF {aof} at offset {check.good_until} ({removed} bytes removed)\n")
        else:
            out.write(
                f"Run again with --fix to truncate it at offset {check.good_until} "
                f"({check.size - check.good_until} bytes would be removed)\n"
            )
            status = 1
    return status
