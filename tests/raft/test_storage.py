"""FileStorage: CRC'd segments, one fsync per batch, truncation, hard state, snapshots, recovery."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from raft.core import Entry, EntryKind, HardState, PersistentState, Snapshot, SnapshotMeta, bootstrap_state
from raft.core.types import ConfState
from raft.storage import FileStorage, MemoryStorage, StorageCorrupted, StorageError

BASE_DIR = Path(__file__).resolve().parents[2]


def entries(first: int, last: int, term: int = 1, size: int = 10) -> list[Entry]:
    return [Entry(term, i, EntryKind.NORMAL, b"%0*d" % (size, i), "c", i) for i in range(first, last + 1)]


def reopen(storage: FileStorage, **kwargs: int) -> FileStorage:
    storage.close()
    return FileStorage.open(storage.path, **kwargs)


@pytest.fixture
def store(tmp_path: Path):
    storage = FileStorage.open(tmp_path / "node")
    yield storage
    storage.close()


def test_entries_and_hard_state_survive_reopen(store: FileStorage) -> None:
    store.save(hard_state=HardState(3, 2, 4), entries=entries(1, 5, term=3))
    store = reopen(store)
    state = store.load()
    assert state.hard_state == HardState(3, 2, 4)
    assert state.entries == entries(1, 5, term=3)
    assert store.last_index() == 5
    store.close()


def test_one_fsync_per_batch(store: FileStorage) -> None:
    before = store.syncs
    for batch in range(10):
        first = batch * 50 + 1
        store.save(hard_state=HardState(1, 1, first - 1), entries=entries(first, first + 49))
    assert store.syncs - before == 10
    store.save(hard_state=HardState(1, 1, 500), sync=False)  # a commit-only change need not sync
    assert store.syncs - before == 10


def test_conflicting_suffix_is_truncated(store: FileStorage) -> None:
    store.save(entries=entries(1, 10, term=1))
    store.save(entries=entries(6, 7, term=2))
    assert [e.term for e in store.load().entries] == [1] * 5 + [2, 2]
    store = reopen(store)
    assert [(e.index, e.term) for e in store.load().entries] == [(i, 1) for i in range(1, 6)] + [(6, 2), (7, 2)]
    store.close()


def test_truncation_never_loses_term_and_vote(store: FileStorage) -> None:
    """The vote is recorded after entries 1..5; cutting the log at 3 cuts that record, not the vote."""
    store.save(entries=entries(1, 5, term=4))
    store.save(hard_state=HardState(term=7, vote=2, commit=2))
    store.save(entries=entries(3, 4, term=7))  # truncates from 3: the hard-state record goes with it
    store = reopen(store)
    assert store.load().hard_state == HardState(term=7, vote=2, commit=2)
    assert (store.path / "hardstate").exists()
    store.close()


def test_segments_roll_and_compaction_removes_whole_segments(tmp_path: Path) -> None:
    store = FileStorage.open(tmp_path / "n", segment_bytes=4096)
    for first in range(1, 1001, 100):
        store.save(hard_state=HardState(1, 1, first - 1), entries=entries(first, first + 99, size=40))
    segments = sorted((tmp_path / "n" / "wal").glob("*.seg"))
    assert len(segments) > 5
    snapshot = Snapshot(SnapshotMeta(600, 1, ConfState((1,))), b"state at 600")
    store.save_snapshot(snapshot)
    store.compact(600)
    assert len(sorted((tmp_path / "n" / "wal").glob("*.seg"))) < len(segments)
    store = reopen(store, segment_bytes=4096)
    state = store.load()
    assert state.snapshot == snapshot
    assert [e.index for e in state.entries] == list(range(601, 1001))
    assert state.hard_state.commit == 900
    store.close()


def test_compacting_past_the_saved_snapshot_is_refused(store: FileStorage) -> None:
    store.save(entries=entries(1, 10))
    with pytest.raises(StorageError, match="newest saved snapshot"):
        store.compact(5)


def test_a_gap_is_refused(store: FileStorage) -> None:
    store.save(entries=entries(1, 3))
    with pytest.raises(StorageError, match="gap"):
        store.save(entries=entries(5, 6))


def _last_segment(store: FileStorage) -> Path:
    return sorted((store.path / "wal").glob("*.seg"))[-1]


def test_torn_tail_is_truncated(store: FileStorage, caplog: pytest.LogCaptureFixture) -> None:
    store.save(hard_state=HardState(1, 1, 3), entries=entries(1, 5))
    store.save(entries=entries(6, 6))
    segment = _last_segment(store)
    store.close()
    data = segment.read_bytes()
    segment.write_bytes(data[:-7])  # the last record was cut short by the crash
    with caplog.at_level(logging.WARNING, logger="raft.storage"):
        store = FileStorage.open(store.path)
    assert [e.index for e in store.load().entries] == [1, 2, 3, 4, 5]
    assert "torn tail" in caplog.text
    store.save(entries=entries(6, 8))  # and the log goes on cleanly after it
    store = reopen(store)
    assert store.last_index() == 8
    store.close()


def test_garbage_after_the_last_record_is_a_torn_tail(store: FileStorage) -> None:
    store.save(entries=entries(1, 3))
    segment = _last_segment(store)
    store.close()
    with open(segment, "ab") as handle:
        handle.write(b"\x00" * 100)  # a preallocated, never written tail reads back as zeros
    store = FileStorage.open(store.path)
    assert store.last_index() == 3
    store.close()


def test_corruption_before_the_tail_is_refused(store: FileStorage) -> None:
    store.save(entries=entries(1, 20))
    segment = _last_segment(store)
    store.close()
    data = bytearray(segment.read_bytes())
    data[len(data) // 3] ^= 0xFF  # a flipped bit inside an early record, valid records after it
    segment.write_bytes(bytes(data))
    with pytest.raises(StorageCorrupted, match=r"at byte \d+: record fails its CRC.*refusing to start") as info:
        FileStorage.open(store.path)
    assert info.value.path == segment


def test_corruption_in_an_older_segment_is_refused(tmp_path: Path) -> None:
    store = FileStorage.open(tmp_path / "n", segment_bytes=4096)
    store.save(entries=entries(1, 300, size=40))
    first = sorted((tmp_path / "n" / "wal").glob("*.seg"))[0]
    store.close()
    data = bytearray(first.read_bytes())
    data[-5] ^= 0x01  # the tail of a segment that is not the last one is not a torn write
    first.write_bytes(bytes(data))
    with pytest.raises(StorageCorrupted, match="not the tail"):
        FileStorage.open(tmp_path / "n", segment_bytes=4096)


def test_snapshot_checksum_is_verified(store: FileStorage) -> None:
    store.save(entries=entries(1, 10))
    store.save_snapshot(Snapshot(SnapshotMeta(8, 1, ConfState((1, 2, 3))), b"x" * 1000))
    path = next((store.path / "snap").glob("*.snap"))
    store.close()
    data = bytearray(path.read_bytes())
    data[-10] ^= 0x20
    path.write_bytes(bytes(data))
    with pytest.raises(StorageCorrupted, match="snapshot fails its checksum"):
        FileStorage.open(store.path)


def test_lost_acknowledged_entries_are_refused(store: FileStorage) -> None:
    """The hard state says 8 is committed but the disk (a lying one) lost entries 5..10."""
    store.save(hard_state=HardState(1, 1, 8), entries=entries(1, 10))
    store.save(entries=entries(9, 10, term=2))  # a truncation: the hard state is also written aside
    segment = _last_segment(store)
    store.close()
    with open(segment, "r+b") as handle:
        data = handle.read()
        handle.truncate(data.index(entries(5, 5)[0].data) - 24)  # cut on the record boundary before entry 5
    with pytest.raises(StorageCorrupted, match="commit 8 is beyond the end of the log"):
        FileStorage.open(store.path)


def test_a_missing_segment_is_refused(tmp_path: Path) -> None:
    store = FileStorage.open(tmp_path / "n", segment_bytes=4096)
    store.save(entries=entries(1, 300, size=40))
    segments = sorted((tmp_path / "n" / "wal").glob("*.seg"))
    store.close()
    segments[len(segments) // 2].unlink()
    with pytest.raises(StorageCorrupted, match=r"where .* was expected"):
        FileStorage.open(tmp_path / "n", segment_bytes=4096)


def test_installing_a_snapshot_replaces_the_log(store: FileStorage) -> None:
    store.save(hard_state=HardState(2, 1, 3), entries=entries(1, 6, term=2))
    snap = Snapshot(SnapshotMeta(20, 5, ConfState((1, 2, 3))), b"leader state")
    store.save(snapshot=snap, hard_state=HardState(5, 0, 20), entries=entries(21, 22, term=5))
    store = reopen(store)
    state = store.load()
    assert state.snapshot == snap
    assert [e.index for e in state.entries] == [21, 22]
    assert state.hard_state == HardState(5, 0, 20)
    store.close()


def test_an_interrupted_snapshot_install_discards_the_old_history(store: FileStorage) -> None:
    """Crash after the snapshot file was written but before the log was reset."""
    store.save(hard_state=HardState(2, 1, 3), entries=entries(1, 8, term=2))
    store.save_snapshot(Snapshot(SnapshotMeta(5, 4, ConfState((1, 2, 3))), b"s"))  # term 4 at 5: not our log
    store = reopen(store)
    state = store.load()
    assert state.snapshot is not None
    assert state.entries == []
    assert store.last_index() == 5
    store.save(entries=entries(6, 7, term=4))
    store = reopen(store)
    assert [e.index for e in store.load().entries] == [6, 7]
    store.close()


def test_a_directory_is_opened_by_one_storage_at_a_time(store: FileStorage) -> None:
    with pytest.raises(StorageError, match="in use by another process"):
        FileStorage.open(store.path)


def test_bootstrapping_over_existing_state_is_refused(store: FileStorage) -> None:
    store.initialize(bootstrap_state([1, 2, 3]))
    with pytest.raises(StorageError, match="already holds raft state"):
        store.initialize(bootstrap_state([1, 2, 3]))


def test_memory_storage_follows_the_same_rules() -> None:
    mem = MemoryStorage()
    mem.initialize(PersistentState(HardState(1, 0, 1), None, entries(1, 1)))
    mem.save(entries=entries(2, 6, term=1))
    mem.save(entries=entries(4, 5, term=2))
    assert [(e.index, e.term) for e in mem.entries()] == [(1, 1), (2, 1), (3, 1), (4, 2), (5, 2)]
    with pytest.raises(StorageError, match="gap"):
        mem.save(entries=entries(9, 9))
    mem.save_snapshot(Snapshot(SnapshotMeta(3, 1, ConfState((1,))), b""))
    mem.compact(3)
    assert [e.index for e in mem.load().entries] == [4, 5]
    with pytest.raises(StorageError, match="compacted"):
        mem.save(entries=entries(2, 2))


WRITER = """
import sys
from raft.core import Entry, HardState
from raft.storage import FileStorage
store = FileStorage.open(sys.argv[1], segment_bytes=65536)
index = store.last_index()
while True:
    batch = [Entry(1, i, data=b"v%d" % i) for i in range(index + 1, index + 21)]
    store.save(hard_state=HardState(1, 1, index), entries=batch)
    index += 20
    sys.stdout.write(f"{index}\\n")
    sys.stdout.flush()
"""


def test_acknowledged_entries_survive_kill_9(tmp_path: Path) -> None:
    """A writer acknowledges each batch after save() returns; SIGKILL it mid-stream, several times."""
    data_dir = tmp_path / "node"
    env = {**os.environ, "PYTHONPATH": str(BASE_DIR)}
    acked = 0
    for round_no in range(4):
        with subprocess.Popen(
            [sys.executable, "-c", WRITER, str(data_dir)], stdout=subprocess.PIPE, env=env, text=True
        ) as writer:
            assert writer.stdout is not None
            deadline = time.monotonic() + 0.3 + 0.2 * round_no
            line = ""
            while time.monotonic() < deadline:
                line = writer.stdout.readline()
                if not line:
                    break
                acked = int(line)
            writer.send_signal(signal.SIGKILL)
            writer.wait()
        assert line, "the writer produced nothing"
        store = FileStorage.open(data_dir, segment_bytes=65536)
        state = store.load()
        store.close()
        assert store.last_index() >= acked, f"round {round_no}: acknowledged {acked}, found {store.last_index()}"
        assert [e.index for e in state.entries] == list(range(1, store.last_index() + 1))
        assert all(e.data == b"v%d" % e.index for e in state.entries)
    assert acked >= 80
