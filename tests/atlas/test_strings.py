import pytest

from atlas.protocol import ErrorReply


def test_set_get_and_options(client, clock):
    assert client.call("SET", "k", "v") == b"OK"
    assert client.call("GET", "k") == b"v"
    assert client.call("SET", "k", "w", "NX") is None
    assert client.call("SET", "new", "x", "XX") is None
    assert client.call("SET", "k", "w", "XX", "GET") == b"v"
    assert client.call("SET", "k", "z", "EX", "10") == b"OK"
    assert client.call("TTL", "k") == 10
    assert client.call("SET", "k", "y", "KEEPTTL") == b"OK"
    assert client.call("PTTL", "k") == 10_000
    assert client.call("SET", "k", "y") == b"OK"
    assert client.call("TTL", "k") == -1


@pytest.mark.parametrize(
    "args",
    [
        ("SET", "k", "v", "EX", "0"),
        ("SET", "k", "v", "EX", "-5"),
        ("SET", "k", "v", "PX", "abc"),
        ("SET", "k", "v", "EX", "10", "PX", "10"),
        ("SET", "k", "v", "NX", "XX"),
        ("SET", "k", "v", "KEEPTTL", "EX", "1"),
        ("SET", "k", "v", "BOGUS"),
        ("SET", "k", "v", "EX"),
    ],
)
def test_set_refuses_bad_options(client, args):
    with pytest.raises(ErrorReply):
        client.call(*args)
    assert client.call("EXISTS", "k") == 0


def test_set_ex_is_propagated_with_an_absolute_deadline(client, clock, propagated):
    client.call("SET", "k", "v", "EX", "100")
    deadline = int(clock.now * 1000) + 100_000
    assert propagated == [(0, [b"SET", b"k", b"v", b"PXAT", b"%d" % deadline])]


def test_wrongtype_has_redis_wording(client):
    client.call("LPUSH", "list", "a")
    with pytest.raises(ErrorReply, match="^WRONGTYPE Operation against a key holding the wrong kind of value$"):
        client.call("GET", "list")


def test_incr_family(client):
    assert client.call("INCR", "n") == 1
    assert client.call("INCRBY", "n", "41") == 42
    assert client.call("DECR", "n") == 41
    assert client.call("DECRBY", "n", "40") == 1
    client.call("SET", "s", "abc")
    with pytest.raises(ErrorReply, match="^ERR value is not an integer or out of range$"):
        client.call("INCR", "s")
    client.call("SET", "big", str(2**63 - 1))
    with pytest.raises(ErrorReply, match="^ERR increment or decrement would overflow$"):
        client.call("INCR", "big")
    for bad in ("01", "+1", " 1", "1.0", "1e3"):
        client.call("SET", "x", bad)
        with pytest.raises(ErrorReply):
            client.call("INCR", "x")


def test_incr_keeps_the_ttl(client):
    client.call("SET", "n", "1", "EX", "50")
    client.call("INCR", "n")
    assert client.call("TTL", "n") == 50


def test_incrbyfloat_is_exact_and_propagated_as_its_result(client, propagated):
    assert client.call("INCRBYFLOAT", "f", "10.5") == b"10.5"
    assert client.call("INCRBYFLOAT", "f", "0.1") == b"10.6"
    assert client.call("INCRBYFLOAT", "f", "-10.6") == b"0"
    assert client.call("INCRBYFLOAT", "f", "5.0e3") == b"5000"
    assert propagated[-1] == (0, [b"SET", b"f", b"5000", b"KEEPTTL"])
    with pytest.raises(ErrorReply, match="^ERR value is not a valid float$"):
        client.call("INCRBYFLOAT", "f", "abc")


def test_mget_mset_msetnx(client):
    assert client.call("MSET", "a", "1", "b", "2") == b"OK"
    client.call("LPUSH", "l", "x")
    assert client.call("MGET", "a", "b", "missing", "l") == [b"1", b"2", None, None]
    assert client.call("MSETNX", "a", "9", "c", "3") == 0
    assert client.call("EXISTS", "c") == 0
    assert client.call("MSETNX", "c", "3", "d", "4") == 1
    with pytest.raises(ErrorReply, match="wrong number of arguments for 'mset'"):
        client.call("MSET", "a", "1", "b")


def test_getset_getdel_getex(client, clock):
    assert client.call("GETSET", "k", "1") is None
    assert client.call("GETSET", "k", "2") == b"1"
    assert client.call("GETEX", "k", "EX", "5") == b"2"
    assert client.call("TTL", "k") == 5
    assert client.call("GETEX", "k", "PERSIST") == b"2"
    assert client.call("TTL", "k") == -1
    assert client.call("GETDEL", "k") == b"2"
    assert client.call("EXISTS", "k") == 0


def test_append_strlen_ranges(client):
    assert client.call("APPEND", "s", "Hello") == 5
    assert client.call("APPEND", "s", " World") == 11
    assert client.call("STRLEN", "s") == 11
    assert client.call("GETRANGE", "s", "0", "4") == b"Hello"
    assert client.call("GETRANGE", "s", "-5", "-1") == b"World"
    assert client.call("GETRANGE", "s", "5", "1") == b""
    assert client.call("SETRANGE", "s", "6", "Redis") == 11
    assert client.call("GET", "s") == b"Hello Redis"
    assert client.call("SETRANGE", "pad", "3", "x") == 4
    assert client.call("GET", "pad") == b"\x00\x00\x00x"
    with pytest.raises(ErrorReply, match="^ERR offset is out of range$"):
        client.call("SETRANGE", "s", "-1", "x")


def test_values_over_the_size_limit_are_refused(client, state):
    state.config.proto_max_bulk_len = 10
    client.call("SET", "s", "12345")
    with pytest.raises(ErrorReply, match="string exceeds maximum allowed size"):
        client.call("APPEND", "s", "678901")
    with pytest.raises(ErrorReply, match="string exceeds maximum allowed size"):
        client.call("SETRANGE", "s", "100", "x")
