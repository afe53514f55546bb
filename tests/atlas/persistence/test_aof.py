"""The AOF reader: every cut of a file is a torn tail at the last whole record (MULTI blocks whole),
anything else that is not a record is corruption at the record's offset."""

from __future__ import annotations

import errno
import os

import pytest

from atlas.persistence.aof import AofFile, scan
from atlas.persistence.recovery import command_check
from atlas.protocol import encode_command
from tests.atlas.persistence.conftest import Ops

RECORDS = [
    [b"SELECT", b"0"],
    [b"SET", b"k", b"v"],
    [b"MULTI"],
    [b"INCR", b"n"],
    [b"RPUSH", b"l", b"a", b"\r\n\x00binary"],
    [b"EXEC"],
    [b"SET", b"big", b"x" * 300],
    [b"PEXPIREAT", b"k", b"99999999999999"],
]


def image() -> tuple[bytes, list[int]]:
    """An AOF image and the offsets where a replay may stop (record ends outside MULTI blocks)."""
    data = b""
    boundaries = [0]
    depth = 0
    for argv in RECORDS:
        data += encode_command(argv)
        depth += argv[0] == b"MULTI"
        depth -= argv[0] == b"EXEC"
        if depth == 0:
            boundaries.append(len(data))
    return data, boundaries


def test_a_whole_file_scans_clean_and_hands_on_every_record_in_order():
    data, _ = image()
    seen: list[list[bytes]] = []
    result = scan(data, on_record=seen.append, check=command_check)
    assert result.problem is None
    assert result.good_until == len(data)
    assert seen == RECORDS


def test_every_cut_is_a_torn_tail_at_the_last_whole_record():
    data, boundaries = image()
    for cut in range(len(data) + 1):
        seen: list[list[bytes]] = []
        result = scan(data[:cut], on_record=seen.append)
        expected = max(b for b in boundaries if b <= cut)
        assert result.good_until == expected, cut
        if cut in boundaries:
            assert result.problem is None, cut
        else:
            assert result.problem is not None, cut
            assert result.problem.torn, (cut, result.problem)
            assert result.problem.offset == expected
        # A MULTI block is applied whole or not at all.
        assert seen.count([b"MULTI"]) == seen.count([b"EXEC"])


def test_a_zero_filled_tail_is_torn_not_corrupt():
    data, _ = image()
    result = scan(data + b"\0" * 4096)
    assert result.problem is not None
    assert result.problem.torn
    assert result.good_until == len(data)


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda d, at: d[:at] + b"garbage" + d[at:], "expected '*'"),
        (lambda d, at: d[:at] + b"*2\r\n$3\r\nSET\r\nxx\r\n" + d[at:], "expected '$'"),
        (lambda d, at: d[:at] + b"*1\r\n$4\r\nPINGXX" + d[at:], "not followed by CRLF"),
        (lambda d, at: d[:at] + encode_command([b"NOSUCHCOMMAND", b"x"]) + d[at:], "unknown command"),
        (lambda d, at: d[:at] + encode_command([b"SET", b"only-key"]) + d[at:], "wrong number of arguments"),
        (lambda d, at: d[:at] + encode_command([b"EXEC"]) + d[at:], "EXEC without MULTI"),
    ],
)
def test_damage_in_the_middle_is_corruption_at_its_offset(damage, reason):
    data, boundaries = image()
    at = boundaries[2]
    result = scan(damage(data, at), check=command_check)
    assert result.problem is not None
    assert not result.problem.torn
    assert result.problem.offset == at
    assert result.good_until == at
    assert reason in result.problem.reason


def test_a_multi_inside_multi_is_corruption():
    data = encode_command([b"MULTI"]) + encode_command([b"SET", b"a", b"b"]) + encode_command([b"MULTI"])
    result = scan(data + encode_command([b"EXEC"]))
    assert result.problem is not None
    assert not result.problem.torn
    assert result.good_until == 0


def test_annotations_are_skipped_as_redis_writes_them():
    data, _ = image()
    seen: list[list[bytes]] = []
    result = scan(b"#TS:1700000000\r\n" + data, on_record=seen.append)
    assert result.problem is None
    assert seen == RECORDS


def test_a_failed_write_leaves_the_file_at_its_last_whole_write(tmp_path):
    ops = Ops()
    aof = AofFile(tmp_path / "appendonly.000001.aof", ops)
    aof.write(encode_command([b"SET", b"a", b"1"]))
    good = aof.size
    ops.fail_write = errno.ENOSPC
    ops.partial = True  # half the batch reaches the file before the disk fills up
    with pytest.raises(OSError, match="No space left on device"):
        aof.write(encode_command([b"SET", b"b", b"2"]) * 10)
    assert aof.size == good
    assert os.path.getsize(aof.path) == good, "the half-written batch was cut back off"
    ops.fail_write = None
    aof.write(encode_command([b"SET", b"c", b"3"]))
    aof.close()
    seen: list[list[bytes]] = []
    assert scan(aof.path.read_bytes(), on_record=seen.append).problem is None
    assert seen == [[b"SET", b"a", b"1"], [b"SET", b"c", b"3"]]


@pytest.mark.parametrize("count", [1, 2, 3, 4, 5, 9])
def test_the_hot_path_encoding_is_resp_as_the_protocol_writes_it(count):
    from atlas.persistence.engine import append_command

    argv = [b"CMD", *[b"arg\r\n%d" % i * (i + 1) for i in range(count - 1)]]
    buffer = bytearray()
    append_command(buffer, argv)
    assert bytes(buffer) == encode_command(argv)


def test_checking_for_room_leaves_the_file_as_it_was(tmp_path):
    ops = Ops()
    aof = AofFile(tmp_path / "appendonly.000001.aof", ops)
    aof.write(encode_command([b"SET", b"a", b"1"]))
    before = aof.path.read_bytes()
    aof.check_room(1 << 20)
    assert aof.path.read_bytes() == before
    ops.fail_write = errno.ENOSPC
    with pytest.raises(OSError, match="No space left on device"):
        aof.check_room(1 << 20)
    assert aof.path.read_bytes() == before
    aof.close()
