"""Snapshots: every type and absolute TTL round-trips; any damaged byte is detected; a forked
snapshot holds the keyspace as it was at fork() while the parent goes on writing."""

from __future__ import annotations

import io
import math

import pytest

from atlas.commands.session import ServerState
from atlas.persistence.snapshot import (
    BackgroundSnapshot,
    SnapshotError,
    load_keyspace,
    read_snapshot,
    snapshot_bytes,
    write_snapshot,
)
from atlas.store.keyspace import Store
from tests.atlas.conftest import Client
from tests.atlas.persistence.conftest import keyspace


def populate(client: Client) -> None:
    client.call("SET", "s", "plain")
    client.call("SET", b"\x00bin\r\nkey", b"\xff\x00value\r\n")
    client.call("SET", "empty", "")
    client.call("SET", "ttl", "soon", "PX", "2000")
    client.call("HSET", "h", "f1", "v1", b"f\x002", b"")
    client.call("RPUSH", "l", "a", "b", "a", "")
    client.call("SADD", "set", "m1", "m2", b"\x00")
    client.call("ZADD", "z", "1.5", "a", "-inf", "low", "inf", "high", "1.5", "b", "0", "zero")
    client.call("PEXPIREAT", "h", "4102444800000")
    client.call("SELECT", "7")
    client.call("SET", "in-db-7", "x", "EX", "100")
    client.call("RPUSH", "big", *[str(i) for i in range(5000)])
    client.call("SELECT", "0")
    for i in range(3000):  # several blocks
        client.call("SET", f"key:{i}", f"value:{i}")


def test_every_type_and_absolute_ttl_round_trips(state, client, clock):
    populate(client)
    data = snapshot_bytes(state.store, meta={"raft_index": 42})
    restored = ServerState(store=Store(clock=clock))
    info = load_keyspace(restored.store, io.BytesIO(data))
    assert keyspace(restored) == keyspace(state)
    assert info.keys == state.store.key_count()
    assert info.meta == {"raft_index": 42}
    zset = restored.store.dbs[0].data[b"z"]
    assert zset.scores[b"low"] == -math.inf
    assert zset.scores[b"high"] == math.inf


def test_a_key_past_its_deadline_is_loaded_then_expires_as_usual(state, client, clock):
    client.call("SET", "ttl", "v", "PX", "2000")
    data = snapshot_bytes(state.store)
    clock.advance(3)  # the node was down longer than the key had left
    restored = ServerState(store=Store(clock=clock))
    load_keyspace(restored.store, io.BytesIO(data))
    assert restored.store.dbs[0].lookup(b"ttl") is None


def test_every_damaged_byte_is_detected(state, client):
    populate(client)
    data = snapshot_bytes(state.store)
    step = max(1, len(data) // 400)
    for position in range(0, len(data), step):
        damaged = bytearray(data)
        damaged[position] ^= 0x5A
        with pytest.raises(SnapshotError):
            load_keyspace(Store(), io.BytesIO(bytes(damaged)), "damaged")


@pytest.mark.parametrize("cut", [0, 5, 12, 100, -1, -7])
def test_a_truncated_snapshot_is_refused(state, client, cut):
    populate(client)
    data = snapshot_bytes(state.store)
    with pytest.raises(SnapshotError):
        load_keyspace(Store(), io.BytesIO(data[:cut]), "cut")


def test_another_version_is_refused_with_its_number(state, client):
    data = bytearray(snapshot_bytes(state.store))
    data[9] = 99
    with pytest.raises(SnapshotError, match="version 99"):
        load_keyspace(Store(), io.BytesIO(bytes(data)), "future")


def test_a_snapshot_file_is_written_whole_under_its_name(state, client, tmp_path):
    populate(client)
    path = tmp_path / "snapshot.000001.atlas"
    write_snapshot(state.store, path)
    assert not (tmp_path / "snapshot.000001.atlas.tmp").exists()
    restored = ServerState(store=Store(clock=state.store.clock))
    read_snapshot(restored.store, path)
    assert keyspace(restored) == keyspace(state)


def test_a_forked_snapshot_holds_the_keyspace_as_it_was_at_fork(state, client, tmp_path):
    populate(client)
    before = keyspace(state)
    path = tmp_path / "snapshot.000002.atlas"
    child = BackgroundSnapshot.start(state.store, path, key_delay=0.0002)  # slow enough to overlap
    client.call("SET", "s", "changed after the fork")
    client.call("DEL", "h")
    client.call("SET", "new", "key")
    outcome = child.wait()
    assert outcome.ok, outcome.error
    assert outcome.info is not None
    assert outcome.info.keys == len(before)
    restored = ServerState(store=Store(clock=state.store.clock))
    read_snapshot(restored.store, path)
    assert keyspace(restored) == before


def test_a_killed_background_snapshot_leaves_no_file(state, client, tmp_path):
    populate(client)
    path = tmp_path / "snapshot.000003.atlas"
    child = BackgroundSnapshot.start(state.store, path, key_delay=0.01)
    child.kill()
    assert not path.exists()
    assert not path.with_name(path.name + ".tmp").exists()
