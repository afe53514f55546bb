import pytest

from atlas.protocol import ErrorReply


def test_del_exists_type(client):
    client.call("MSET", "a", "1", "b", "2")
    client.call("SADD", "s", "x")
    assert client.call("EXISTS", "a", "a", "nope") == 2
    assert client.call("TYPE", "s") == b"set"
    assert client.call("TYPE", "nope") == b"none"
    assert client.call("DEL", "a", "b", "nope") == 2
    assert client.call("UNLINK", "s") == 1
    assert client.call("DBSIZE") == 0


def test_keys_with_redis_globs(client):
    client.call("MSET", "user:1", "a", "user:2", "b", "user:10", "c", "job:1", "d", "h[x]", "e")
    assert sorted(client.call("KEYS", "user:?")) == [b"user:1", b"user:2"]
    assert sorted(client.call("KEYS", "user:*")) == [b"user:1", b"user:10", b"user:2"]
    assert sorted(client.call("KEYS", "user:[12]")) == [b"user:1", b"user:2"]
    assert client.call("KEYS", "user:1[^2]") == [b"user:10"]
    assert client.call("KEYS", "user:[^12]*") == []
    assert client.call("KEYS", "h\\[x\\]") == [b"h[x]"]


def test_scan_returns_every_key_exactly_as_redis_guarantees(client):
    keys = {f"key:{number}".encode() for number in range(2000)}
    for key in keys:
        client.call("SET", key, "v")
    seen: set[bytes] = set()
    cursor = b"0"
    rounds = 0
    while True:
        cursor, page = client.call("SCAN", cursor, "COUNT", "100")
        seen.update(page)
        rounds += 1
        # delete and add keys while iterating: keys present throughout must still all come back
        if rounds == 5:
            client.call("DEL", "key:1999")
            keys.discard(b"key:1999")
            client.call("SET", "added-later", "v")
        if cursor == b"0":
            break
    assert keys <= seen
    assert rounds > 10


def test_scan_match_and_type(client):
    client.call("MSET", "a1", "x", "a2", "x", "b1", "x")
    client.call("LPUSH", "a3", "x")
    _, page = client.call("SCAN", "0", "MATCH", "a*", "TYPE", "string", "COUNT", "1000")
    assert sorted(page) == [b"a1", b"a2"]
    with pytest.raises(ErrorReply, match="invalid cursor"):
        client.call("SCAN", "-1")
    with pytest.raises(ErrorReply, match="syntax error"):
        client.call("SCAN", "0", "COUNT", "0")


def test_rename_keeps_ttl_and_renamenx(client):
    client.call("SET", "a", "1", "EX", "100")
    assert client.call("RENAME", "a", "b") == b"OK"
    assert client.call("TTL", "b") == 100
    with pytest.raises(ErrorReply, match="^ERR no such key$"):
        client.call("RENAME", "a", "c")
    client.call("SET", "c", "3")
    assert client.call("RENAMENX", "b", "c") == 0
    assert client.call("RENAMENX", "b", "d") == 1


def test_copy_deep_copies_and_can_target_another_db(client):
    client.call("RPUSH", "src", "a", "b")
    assert client.call("COPY", "src", "dst") == 1
    client.call("RPUSH", "src", "c")
    assert client.call("LRANGE", "dst", "0", "-1") == [b"a", b"b"]
    assert client.call("COPY", "src", "dst") == 0
    assert client.call("COPY", "src", "dst", "REPLACE") == 1
    assert client.call("COPY", "src", "src", "DB", "3") == 1
    client.call("SELECT", "3")
    assert client.call("LLEN", "src") == 3
    with pytest.raises(ErrorReply, match="source and destination objects are the same"):
        client.call("COPY", "src", "src")


def test_expire_family_with_conditions(client, clock):
    client.call("SET", "k", "v")
    assert client.call("EXPIRE", "k", "100", "XX") == 0
    assert client.call("EXPIRE", "k", "100", "NX") == 1
    assert client.call("EXPIRE", "k", "50", "GT") == 0
    assert client.call("EXPIRE", "k", "200", "GT") == 1
    assert client.call("EXPIRE", "k", "10", "LT") == 1
    assert client.call("TTL", "k") == 10
    assert client.call("PEXPIRE", "k", "5000") == 1
    assert client.call("PTTL", "k") == 5000
    at = int(clock.now) + 30
    assert client.call("EXPIREAT", "k", str(at)) == 1
    assert client.call("EXPIRETIME", "k") == at
    assert client.call("PEXPIRETIME", "k") == at * 1000
    assert client.call("PERSIST", "k") == 1
    assert client.call("TTL", "k") == -1
    assert client.call("EXPIRE", "missing", "10") == 0
    assert client.call("TTL", "missing") == -2
    with pytest.raises(ErrorReply, match="NX and XX, GT or LT"):
        client.call("EXPIRE", "k", "10", "NX", "GT")
    with pytest.raises(ErrorReply, match="GT and LT options"):
        client.call("EXPIRE", "k", "10", "GT", "LT")


def test_expire_in_the_past_deletes_and_propagates_del(client, propagated):
    client.call("SET", "k", "v")
    assert client.call("EXPIRE", "k", "-1") == 1
    assert client.call("EXISTS", "k") == 0
    assert propagated[-1] == (0, [b"DEL", b"k"])


def test_relative_expire_is_propagated_as_pexpireat(client, clock, propagated):
    client.call("SET", "k", "v")
    client.call("EXPIRE", "k", "10")
    assert propagated[-1] == (0, [b"PEXPIREAT", b"k", b"%d" % (int(clock.now * 1000) + 10_000)])


def test_randomkey(client):
    assert client.call("RANDOMKEY") is None
    client.call("MSET", "a", "1", "b", "2")
    assert client.call("RANDOMKEY") in (b"a", b"b")


def test_select_is_bounded(client):
    client.call("SET", "k", "db0")
    assert client.call("SELECT", "15") == b"OK"
    assert client.call("GET", "k") is None
    with pytest.raises(ErrorReply, match="^ERR DB index is out of range$"):
        client.call("SELECT", "16")
