"""The engine in-process, through the real Connection: group commit, fsync modes, restarts, disk
errors (injected ENOSPC and EIO), and crashes at every step of a snapshot/AOF rewrite."""

from __future__ import annotations

import contextlib
import pathlib
import time

import pytest

from atlas.persistence import engine as engine_module
from atlas.persistence.files import DataDir, PersistenceError
from atlas.persistence.recovery import AofCorruption
from atlas.protocol import encode_command
from tests.atlas.persistence.conftest import EIO, ENOSPC, keyspace

MISCONF_NOSPACE = b"-MISCONF Errors writing to the AOF file: No space left on device\r\n"


def populate(node) -> None:
    for argv in (
        ["SET", "s", "v"],
        ["SET", "ttl", "v", "PX", "5000"],
        ["HSET", "h", "a", "1", "b", "2"],
        ["RPUSH", "l", "x", "y", "z"],
        ["SADD", "set", *[str(i) for i in range(20)]],
        ["ZADD", "z", "1", "a", "2.5", "b"],
        ["INCRBYFLOAT", "f", "1.25"],
        ["SELECT", "3"],
        ["SET", "db3", "three"],
    ):
        assert not node.call(*argv).startswith(b"-"), argv


def test_a_batch_of_writes_is_answered_after_one_write_and_one_fsync(make_node):
    node = make_node()
    clients = [node.connect() for _ in range(20)]
    fsyncs = node.ops.fsyncs
    for number, (connection, _) in enumerate(clients):
        node.send(connection, "SET", f"k{number}", "v")
    assert all(transport.output == b"" for _, transport in clients), "no reply before the AOF write"
    node.loop.run()
    assert all(transport.output == b"+OK\r\n" for _, transport in clients)
    assert node.ops.fsyncs - fsyncs == 1
    assert node.persistence.aof.synced == node.persistence.aof.size


def test_reads_wait_only_behind_unwritten_changes(make_node):
    node = make_node()
    assert node.call("SET", "k", "v") == b"+OK\r\n"
    reader, read_transport = node.connect()
    node.send(reader, "GET", "k")
    assert read_transport.output == b"$1\r\nv\r\n", "nothing pending: a read is answered at once"
    writer, write_transport = node.connect()
    node.send(writer, "SET", "k", "new")
    node.send(reader, "GET", "k")
    assert read_transport.output == b"$1\r\nv\r\n", "a read of an unwritten change waits for its write"
    node.loop.run()
    assert read_transport.output == b"$1\r\nv\r\n$3\r\nnew\r\n"
    assert write_transport.output == b"+OK\r\n"


def test_interval_mode_fsyncs_in_the_background_and_none_never(make_node):
    node = make_node(appendfsync="everysec")
    fsyncs = node.ops.fsyncs
    assert node.call("SET", "k", "v") == b"+OK\r\n"
    assert node.ops.fsyncs == fsyncs
    aof = node.persistence.aof
    assert aof.synced < aof.size
    node.persistence._last_interval_fsync -= 1.0  # a second has passed
    node.persistence.tick()
    node.persistence._fsync_job.result(timeout=10)
    node.loop.run()
    assert node.ops.fsyncs == fsyncs + 1
    assert aof.synced == aof.size
    node.state.config.appendfsync = "no"
    assert node.call("SET", "k2", "v") == b"+OK\r\n"
    node.persistence._last_interval_fsync -= 1.0
    node.persistence.tick()
    assert node.ops.fsyncs == fsyncs + 1


def test_a_restart_reproduces_the_keyspace_exactly(make_node):
    node = make_node()
    populate(node)
    node.call("SPOP", "set", "5")  # random: the AOF holds the SREM of what it took
    node.call("MULTI")  # a MULTI on its own connection does nothing
    connection, transport = node.connect()
    for argv in (["MULTI"], ["INCR", "n"], ["RPUSH", "l", "w"], ["EXEC"]):
        node.send(connection, *argv)
    node.loop.run()
    assert transport.output.endswith(b"*2\r\n:1\r\n:4\r\n")
    before = keyspace(node.state)
    node.crash()
    again = make_node()
    assert keyspace(again.state) == before
    assert again.report.keys == len(before)


def test_a_torn_tail_is_cut_off_and_the_rest_loads(make_node):
    node = make_node()
    populate(node)
    before = keyspace(node.state)
    path = node.persistence.aof.path
    node.crash()
    whole = path.stat().st_size
    with open(path, "ab") as aof:
        aof.write(encode_command([b"SET", b"torn", b"x" * 100])[:40])
    again = make_node()
    assert keyspace(again.state) == before
    assert again.report.truncated == [(str(path), whole, 40)]
    assert path.stat().st_size == whole


def test_corruption_in_the_middle_stops_the_start_with_one_clear_line(make_node):
    node = make_node()
    populate(node)
    path = node.persistence.aof.path
    node.crash()
    data = path.read_bytes()
    offset = data.index(b"*6\r\n$4\r\nHSET")
    path.write_bytes(data[:offset] + b"!garbage!" + data[offset + 9 :])
    with pytest.raises(AofCorruption) as raised:
        make_node()
    message = str(raised.value)
    assert "\n" not in message
    assert str(path) in message
    assert f"at offset {offset} of {len(data)}" in message
    assert f"atlas_check_aof {path} --fix" in message


@pytest.mark.parametrize("fault", ["write", "fsync"])
def test_a_failing_disk_answers_misconf_rolls_back_and_recovers(make_node, fault):
    node = make_node()
    assert node.call("SET", "kept", "1") == b"+OK\r\n"
    if fault == "write":
        node.ops.fail_write = ENOSPC
        node.ops.partial = True
        expected = MISCONF_NOSPACE
    else:
        node.ops.fail_fsync = EIO
        expected = b"-MISCONF Errors writing to the AOF file: Input/output error\r\n"
    connection, transport = node.connect()
    node.send(connection, "SET", "lost", "1")
    node.send(connection, "GET", "kept")
    node.loop.run()
    assert transport.output == expected * 2, "the failed batch is answered with errors, not acknowledged"
    assert b"aof_last_write_status:err" in node.call("INFO", "persistence")
    assert node.call("GET", "lost") == b"$-1\r\n", "what was not stored is rolled back"
    assert node.call("GET", "kept") == b"$1\r\n1\r\n", "reads go on"
    assert node.call("SET", "refused", "1") == expected, "writes are refused while the disk fails"
    assert node.call("GET", "refused") == b"$-1\r\n"
    transaction, answer = node.connect()
    for argv in (["MULTI"], ["SET", "in-multi", "1"], ["EXEC"]):
        node.send(transaction, *argv)
    node.loop.run()
    assert answer.output.startswith(b"+OK\r\n-MISCONF")
    assert answer.output.endswith(b"-EXECABORT Transaction discarded because of previous errors.\r\n")
    node.persistence.tick()
    assert node.call("SET", "still", "refused").startswith(b"-MISCONF"), "a probe fails while the disk fails"
    node.ops.fail_write = node.ops.fail_fsync = None
    node.persistence.tick()
    assert node.call("SET", "after", "2") == b"+OK\r\n"
    assert b"aof_last_write_status:ok" in node.call("INFO", "persistence")
    node.crash()
    again = make_node()
    assert {key for _, key in keyspace(again.state)} == {b"kept", b"after"}


def test_a_batch_whose_file_cannot_be_cut_back_waits_until_it_can(make_node):
    node = make_node()
    node.ops.fail_write = ENOSPC
    node.ops.fail_truncate = EIO
    connection, transport = node.connect()
    node.send(connection, "SET", "k", "v")
    node.loop.run()
    node.persistence.tick()
    assert transport.output == b"", "neither acknowledged nor refused while the outcome is unknown"
    node.ops.fail_truncate = None
    node.persistence.tick()
    assert transport.output == MISCONF_NOSPACE
    assert node.call("GET", "k") == b"$-1\r\n"


def test_an_exec_of_reads_only_still_runs_while_writes_are_refused(make_node):
    node = make_node()
    node.call("SET", "k", "v")
    node.persistence._set_refusal("MISCONF test")
    connection, transport = node.connect()
    for argv in (["MULTI"], ["GET", "k"], ["EXEC"]):
        node.send(connection, *argv)
    node.loop.run()
    assert transport.output == b"+OK\r\n+QUEUED\r\n*1\r\n$1\r\nv\r\n"
    node.persistence._set_refusal(None)


class SimulatedCrash(BaseException):
    """kill -9 between two file operations."""


def crash_points(monkeypatch, crash_at: int, after: bool) -> list[str]:
    """Count every file mutation of a rewrite; raise SimulatedCrash before (or after) number crash_at."""
    done: list[str] = []

    def counted(name, function):
        def wrapper(*args, **kwargs):
            if len(done) == crash_at and not after:
                raise SimulatedCrash(name)
            result = function(*args, **kwargs)
            done.append(name)
            if len(done) == crash_at + 1 and after:
                raise SimulatedCrash(name)
            return result

        return wrapper

    monkeypatch.setattr(DataDir, "write_manifest", counted("manifest", DataDir.write_manifest))
    monkeypatch.setattr(engine_module, "write_snapshot", counted("snapshot", engine_module.write_snapshot))
    monkeypatch.setattr(engine_module, "AofFile", counted("new aof", engine_module.AofFile))
    monkeypatch.setattr(pathlib.Path, "unlink", counted("unlink", pathlib.Path.unlink))
    return done


def rewrite_with_crash(make_node, monkeypatch, data_dir, crash_at: int, after: bool) -> list[str]:
    """A node with a snapshot and AOF behind it starts SAVE and dies at one step; a restart must
    hold exactly what the node held, and no file the manifest does not name."""
    node = make_node(data_dir)
    populate(node)
    assert node.call("SAVE") == b"+OK\r\n"  # so that the next rewrite has old files to drop
    node.call("SET", "after-first-save", "1")
    before = keyspace(node.state)
    with monkeypatch.context() as patch:
        done = crash_points(patch, crash_at, after)
        with contextlib.suppress(SimulatedCrash):
            node.persistence.save()
    node.crash()
    again = make_node(data_dir)
    assert keyspace(again.state) == before, (crash_at, after, done)
    assert set(again.persistence.datadir.data_files()) == set(again.persistence.manifest.files())
    again.crash()
    return done


def test_a_crash_at_any_step_of_a_rewrite_recovers_everything(make_node, monkeypatch, tmp_path):
    steps = rewrite_with_crash(make_node, monkeypatch, tmp_path / "whole", 1000, False)
    assert steps == ["new aof", "manifest", "snapshot", "manifest", "unlink", "unlink"]
    for crash_at in range(len(steps)):
        for after in (False, True):
            done = rewrite_with_crash(make_node, monkeypatch, tmp_path / f"crash-{crash_at}-{after}", crash_at, after)
            assert len(done) == crash_at + after


def test_shutdown_saves_a_snapshot_unless_nosave(make_node):
    node = make_node()
    node.state.config.save = "300 1"
    populate(node)
    node.stop(save=False)
    again = make_node()
    assert again.persistence.manifest.snapshot is None
    again.call("SET", "more", "1")
    again.state.config.save = "300 1"
    again.stop(save=True)
    third = make_node()
    assert third.persistence.manifest.snapshot is not None
    assert third.report.aof_records == 0
    assert third.call("GET", "more") == b"$1\r\n1\r\n"


def test_bgsave_bgrewriteaof_and_lastsave(make_node):
    node = make_node()
    populate(node)
    node.state.config.others["rdb-key-save-delay"] = "20000"  # 20 ms per key: long enough to overlap
    assert node.call("BGSAVE") == b"+Background saving started\r\n"
    assert node.call("BGSAVE") == b"-ERR Background save already in progress\r\n"
    assert node.call("BGSAVE", "SCHEDULE") == b"+Background saving scheduled\r\n"
    assert node.call("BGREWRITEAOF") == b"+Background append only file rewriting scheduled\r\n"
    assert node.call("SET", "during", "the snapshot") == b"+OK\r\n"
    assert b"rdb_bgsave_in_progress:1" in node.call("INFO", "persistence")
    node.state.config.others["rdb-key-save-delay"] = "0"
    deadline = time.monotonic() + 30
    while node.persistence.snapshots_done < 2 and time.monotonic() < deadline:
        node.persistence.tick()
        time.sleep(0.02)
    assert node.persistence.snapshots_done == 2, node.persistence.last_snapshot_error
    info = node.call("INFO", "persistence")
    assert b"rdb_last_bgsave_status:ok" in info
    assert b"rdb_saves:2" in info
    lastsave = int(node.call("LASTSAVE")[1:-2])
    assert abs(lastsave - time.time()) < 60
    before = keyspace(node.state)
    node.crash()
    assert keyspace(make_node().state) == before


def test_the_aof_is_rewritten_when_it_outgrows_its_base(make_node):
    node = make_node()
    node.state.config.others["auto-aof-rewrite-min-size"] = "1000"
    for i in range(50):
        node.call("SET", f"k{i}", "x" * 50)
    grown = node.persistence.aof.size
    node.persistence.tick()
    assert node.persistence.child is not None, "a rewrite starts once the AOF passes the minimum size"
    deadline = time.monotonic() + 30
    while node.persistence.child is not None and time.monotonic() < deadline:
        time.sleep(0.01)
        node.persistence.tick()
    assert node.persistence.snapshots_done == 1
    assert node.persistence.aof.size < grown
    node.persistence.tick()
    assert node.persistence.child is None, "no rewrite again until it grows again"


def test_a_second_node_on_the_same_data_dir_is_refused(make_node):
    make_node()
    with pytest.raises(PersistenceError, match="in use by another ATLAS process"):
        make_node()


def test_nothing_is_acknowledged_after_shutdown_closed_the_aof(make_node):
    node = make_node()
    node.stop(save=False)
    connection, transport = node.connect()
    node.send(connection, "SET", "k", "v")
    node.loop.run()
    assert transport.output == b"", "a write after SHUTDOWN gets no reply: it would not be stored"
