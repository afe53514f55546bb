"""Backups copy the state a manifest names and prove it loads; restores check every checksum and
only fill an empty directory."""

from __future__ import annotations

import json

import pytest

from atlas.persistence import backup
from atlas.persistence.files import PersistenceError
from tests.atlas.persistence.conftest import keyspace
from tests.atlas.persistence.test_engine import populate


def test_a_backup_restores_to_the_same_keyspace(make_node, tmp_path):
    node = make_node()
    populate(node)
    node.call("SAVE")
    node.call("SET", "after-the-snapshot", "in the AOF tail")
    report = backup.backup(None, node.data_dir, tmp_path / "backup")
    assert report.keys == node.state.store.key_count()
    described = json.loads((tmp_path / "backup" / "backup.json").read_text())
    assert set(described["files"]) == set(node.persistence.manifest.files())
    backup.restore(tmp_path / "backup", tmp_path / "restored")
    restored = make_node(tmp_path / "restored")
    assert keyspace(restored.state) == keyspace(node.state)


def test_a_half_written_record_at_the_end_of_the_live_aof_is_left_out(make_node, tmp_path):
    node = make_node()
    populate(node)
    before = keyspace(node.state)
    with open(node.persistence.aof.path, "ab") as aof:
        aof.write(b"*3\r\n$3\r\nSET\r\n$4\r\nhalf")  # a write in progress when the copy was taken
    backup.backup(None, node.data_dir, tmp_path / "backup")
    backup.restore(tmp_path / "backup", tmp_path / "restored")
    assert keyspace(make_node(tmp_path / "restored").state) == before


def test_a_damaged_backup_is_refused(make_node, tmp_path):
    node = make_node()
    populate(node)
    node.call("SAVE")
    backup.backup(None, node.data_dir, tmp_path / "backup")
    snapshot = tmp_path / "backup" / node.persistence.manifest.snapshot
    data = bytearray(snapshot.read_bytes())
    data[len(data) // 2] ^= 1
    snapshot.write_bytes(bytes(data))
    with pytest.raises(PersistenceError, match="does not match its checksum"):
        backup.restore(tmp_path / "backup", tmp_path / "restored")
    assert not (tmp_path / "restored" / "atlas.manifest").exists()


def test_restore_refuses_a_non_empty_data_dir_and_backup_a_non_empty_destination(make_node, tmp_path):
    node = make_node()
    populate(node)
    backup.backup(None, node.data_dir, tmp_path / "backup")
    (tmp_path / "occupied").mkdir()
    (tmp_path / "occupied" / "something").write_text("x")
    with pytest.raises(PersistenceError, match="not empty"):
        backup.restore(tmp_path / "backup", tmp_path / "occupied")
    with pytest.raises(PersistenceError, match="not empty"):
        backup.backup(None, node.data_dir, tmp_path / "occupied")
    with pytest.raises(PersistenceError, match="not an ATLAS backup"):
        backup.restore(tmp_path / "occupied", tmp_path / "new")
