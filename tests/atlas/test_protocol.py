"""RESP parsing and encoding, fed bytes directly (no sockets)."""

import pytest

from atlas.protocol import (
    NULL_ARRAY,
    Double,
    ErrorReply,
    Map,
    ProtocolError,
    ProtocolLimits,
    Push,
    RequestParser,
    Set,
    Status,
    encode,
    encode_command,
    split_inline,
)


def parser(max_bulk=512 * 1024 * 1024, max_buffer=1024 * 1024 * 1024):
    return RequestParser(ProtocolLimits(max_bulk, max_buffer))


def frames_of(chunks, **limits):
    p = parser(**limits)
    out = []
    for chunk in chunks:
        p.feed(chunk)
        out.extend(p.frames())
    return out


def test_a_pipeline_in_one_chunk_gives_every_frame():
    data = encode_command([b"SET", b"k", b"v"]) + encode_command([b"GET", b"k"]) * 3
    assert frames_of([data]) == [[b"SET", b"k", b"v"]] + [[b"GET", b"k"]] * 3


@pytest.mark.parametrize("size", [1, 2, 3, 7])
def test_frames_cut_anywhere_are_reassembled(size):
    data = encode_command([b"SET", b"key", b"x" * 100]) + encode_command([b"PING"])
    chunks = [data[i : i + size] for i in range(0, len(data), size)]
    assert frames_of(chunks) == [[b"SET", b"key", b"x" * 100], [b"PING"]]


def test_binary_values_pass_untouched():
    value = bytes(range(256)) * 4 + b"\r\n*3\r\n$99999999999\r\n"
    assert frames_of([encode_command([b"SET", b"k", value])]) == [[b"SET", b"k", value]]


def test_inline_commands_are_split_with_quotes():
    assert frames_of([b"PING\r\n", b'SET k "hello world"\r\nGET k\n']) == [
        [b"PING"],
        [b"SET", b"k", b"hello world"],
        [b"GET", b"k"],
    ]


def test_inline_then_multibulk_in_one_chunk():
    assert frames_of([b"PING\r\n" + encode_command([b"ECHO", b"x"])]) == [[b"PING"], [b"ECHO", b"x"]]


@pytest.mark.parametrize(
    ("line", "args"),
    [
        (b"a b  c", [b"a", b"b", b"c"]),
        (b'"a\\x41\\n" b', [b"aA\n", b"b"]),
        (b"'it\\'s' x", [b"it's", b"x"]),
        (b"", []),
    ],
)
def test_split_inline_follows_redis_quoting(line, args):
    assert split_inline(line) == args


def test_unbalanced_quotes_are_a_protocol_error():
    with pytest.raises(ProtocolError, match="unbalanced quotes"):
        frames_of([b'SET k "oops\r\n'])


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"*2147483647\r\n", "invalid multibulk length"),
        (b"*1048577\r\n$1\r\n", "invalid multibulk length"),
        (b"*1\r\n$-5\r\n", "invalid bulk length"),
        (b"*1\r\n$600000000\r\n", "invalid bulk length"),
        (b"*1\r\n$abc\r\n", "invalid bulk length"),
        (b"*abc\r\n", "invalid multibulk length"),
    ],
)
def test_hostile_headers_are_refused_before_anything_is_allocated(payload, message):
    with pytest.raises(ProtocolError, match=message):
        frames_of([payload])


def test_a_huge_count_inside_a_complete_pipeline_is_refused():
    data = encode_command([b"PING"]) + b"*99999999\r\n$4\r\nPING\r\n"
    with pytest.raises(ProtocolError, match="invalid multibulk length"):
        frames_of([data])


def test_a_huge_push_header_after_a_frame_is_refused():
    data = encode_command([b"PING"]) + b">2147483647\r\n"
    with pytest.raises(ProtocolError, match="expected '\\*', got '>'"):
        frames_of([data])


def test_a_huge_count_inside_a_value_is_just_data():
    value = b"*99999999\r\n"
    assert frames_of([encode_command([b"SET", b"k", value])]) == [[b"SET", b"k", value]]


def test_a_bulk_over_the_configured_limit_is_refused_on_its_header():
    with pytest.raises(ProtocolError, match="invalid bulk length"):
        frames_of([b"*2\r\n$3\r\nSET\r\n$2000\r\n" + b"x" * 10], max_bulk=1000)


def test_the_query_buffer_limit_closes_a_frame_that_never_ends():
    p = parser(max_bulk=10_000_000, max_buffer=64 * 1024)
    p.feed(b"*2\r\n$3\r\nSET\r\n$9000000\r\n")
    list(p.frames())
    for _ in range(3):
        p.feed(b"x" * 16384)
        list(p.frames())

    def overflow() -> None:
        p.feed(b"x" * 32768)
        list(p.frames())

    with pytest.raises(ProtocolError, match="query buffer limit"):
        overflow()


def test_too_big_inline_requests_are_refused():
    with pytest.raises(ProtocolError, match="too big inline request"):
        frames_of([b"x" * (70 * 1024)])


def test_garbage_is_a_protocol_error():
    with pytest.raises(ProtocolError):
        frames_of([b"*1\r\n\x00\x01\x02garbage\r\n"])


def test_a_blocked_reader_keeps_later_frames_for_later():
    p = parser()
    p.feed(encode_command([b"BLPOP", b"q", b"0"]) + encode_command([b"PING"]))
    iterator = p.frames()
    assert next(iterator) == [b"BLPOP", b"q", b"0"]
    p.feed(encode_command([b"ECHO", b"later"]))
    assert list(p.frames()) == [[b"PING"], [b"ECHO", b"later"]]


def test_resp2_encoding():
    assert encode(b"v", False) == b"$1\r\nv\r\n"
    assert encode(None, False) == b"$-1\r\n"
    assert encode(NULL_ARRAY, False) == b"*-1\r\n"
    assert encode(42, False) == b":42\r\n"
    assert encode(Status(b"OK"), False) == b"+OK\r\n"
    assert encode([b"a", 1, None], False) == b"*3\r\n$1\r\na\r\n:1\r\n$-1\r\n"
    assert encode(Map([(b"k", b"v")]), False) == b"*2\r\n$1\r\nk\r\n$1\r\nv\r\n"
    assert encode(Double(1.5), False) == b"$3\r\n1.5\r\n"
    assert encode(Double(3.0), False) == b"$1\r\n3\r\n"
    assert encode(Push([b"message", b"c", b"m"]), False) == b"*3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$1\r\nm\r\n"
    assert encode(ErrorReply("ERR x"), False) == b"-ERR x\r\n"


def test_resp3_encoding():
    assert encode(None, True) == b"_\r\n"
    assert encode(NULL_ARRAY, True) == b"_\r\n"
    assert encode(Map([(b"k", 1)]), True) == b"%1\r\n$1\r\nk\r\n:1\r\n"
    assert encode(Set([b"a"]), True) == b"~1\r\n$1\r\na\r\n"
    assert encode(Double(1.5), True) == b",1.5\r\n"
    assert encode(Double(float("inf")), True) == b",inf\r\n"
    assert encode(Push([b"message"]), True) == b">1\r\n$7\r\nmessage\r\n"
    assert encode(True, True) == b"#t\r\n"


def test_error_messages_cannot_break_the_framing():
    assert encode(ErrorReply("ERR bad\r\ninjected"), False) == b"-ERR bad  injected\r\n"


def test_inline_commands_between_multibulk_ones_in_one_read():
    """What redis-cli --pipe sends: multibulk commands, an empty line, more multibulk."""
    data = encode_command([b"SET", b"a", b"1"]) + b"\r\nPING\r\n" + encode_command([b"ECHO", b"x" * 20])
    assert frames_of([data]) == [[b"SET", b"a", b"1"], [b"PING"], [b"ECHO", b"x" * 20]]


def test_inline_commands_inside_a_walked_read():
    big = b"v" * 70_000  # cut in two reads: the second read is walked by the guard
    data = encode_command([b"SET", b"k", big]) + b"PING\r\n" + encode_command([b"GET", b"k"])
    assert frames_of([data[:1000], data[1000:]]) == [[b"SET", b"k", big], [b"PING"], [b"GET", b"k"]]


def test_garbage_inside_a_frame_is_still_a_protocol_error():
    with pytest.raises(ProtocolError):
        frames_of([encode_command([b"PING"]) + b"*2\r\n$3\r\nGET\r\n\x00\x01\r\n"])
