"""atlas_check_aof reports the first bad offset and --fix truncates there; the AOF ATLAS writes
passes redis-check-aof, which rejects the same damage ours does."""

from __future__ import annotations

import io
import shutil
import subprocess

import pytest
from django.core.management import call_command

from atlas.persistence import checker
from atlas.persistence.files import PersistenceError
from atlas.protocol import encode_command
from tests.atlas.persistence.test_engine import populate

needs_redis_check_aof = pytest.mark.skipif(
    shutil.which("redis-check-aof") is None, reason="redis-check-aof is not installed (apt install redis-tools)"
)


def written_aof(make_node):
    node = make_node()
    populate(node)
    connection, _ = node.connect()
    for argv in (["MULTI"], ["INCR", "n"], ["SADD", "s2", "a"], ["EXEC"], ["SPOP", "set"]):
        node.send(connection, *argv)
    node.loop.run()
    path = node.persistence.aof.path
    node.stop()
    return path


def run_checker(path, fix=False):
    out = io.StringIO()
    status = checker.run(path, fix, out)
    return status, out.getvalue()


def test_a_valid_aof_is_reported_valid(make_node):
    path = written_aof(make_node)
    status, output = run_checker(path)
    assert status == 0
    assert f"AOF {path} is valid" in output


def test_corruption_is_reported_at_its_offset_and_fixed_by_truncation(make_node):
    path = written_aof(make_node)
    data = path.read_bytes()
    offset = data.index(b"*5\r\n$5\r\nRPUSH")
    path.write_bytes(data[:offset] + b"X" + data[offset + 1 :])
    status, output = run_checker(path)
    assert status == 1
    assert f"corruption at offset {offset}" in output
    assert path.stat().st_size == len(data), "no --fix, no change"
    status, output = run_checker(path, fix=True)
    assert status == 0
    assert f"truncated AOF {path} at offset {offset}" in output
    assert path.read_bytes() == data[:offset]
    assert run_checker(path)[0] == 0


def test_the_management_command_exits_non_zero_on_a_bad_file(make_node, tmp_path):
    path = written_aof(make_node)
    with open(path, "ab") as aof:
        aof.write(encode_command([b"SET", b"k", b"v"])[:-3])
    with pytest.raises(SystemExit) as exited:
        call_command("atlas_check_aof", str(path), stdout=io.StringIO())
    assert exited.value.code == 1
    out = io.StringIO()
    call_command("atlas_check_aof", str(path), "--fix", stdout=out)
    assert "torn tail" in out.getvalue()
    call_command("atlas_check_aof", str(tmp_path / "data"), stdout=out)  # a data dir: every file


@needs_redis_check_aof
def test_redis_check_aof_accepts_what_atlas_writes_and_rejects_what_atlas_rejects(make_node):
    path = written_aof(make_node)
    assert run_checker(path)[0] == 0
    result = subprocess.run(["redis-check-aof", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "is valid" in result.stdout
    data = path.read_bytes()
    offset = data.index(b"$4\r\nINCR") + 4
    path.write_bytes(data[:offset] + b"INCR!!" + data[offset + 6 :])  # a bulk not followed by CRLF
    assert run_checker(path)[0] == 1
    result = subprocess.run(["redis-check-aof", str(path)], capture_output=True, text=True)
    assert result.returncode != 0
    assert "is not valid" in result.stdout


def test_fix_refuses_a_file_a_running_node_appends_to(make_node):
    node = make_node()
    path = node.persistence.aof.path
    with pytest.raises(PersistenceError, match="in use by another ATLAS process"):
        run_checker(path, fix=True)
    assert run_checker(path)[0] == 0, "checking without --fix is fine"
