"""Hashes, lists, sets and sorted sets against the store, without sockets."""

import pytest

from atlas.protocol import NULL_ARRAY, ErrorReply

# -- hashes


def test_hash_commands(client):
    assert client.call("HSET", "h", "a", "1", "b", "2") == 2
    assert client.call("HSET", "h", "a", "10", "c", "3") == 1
    assert client.call("HGET", "h", "a") == b"10"
    assert client.call("HMGET", "h", "a", "zz") == [b"10", None]
    assert client.call("HSETNX", "h", "a", "x") == 0
    assert client.call("HEXISTS", "h", "c") == 1
    assert client.call("HLEN", "h") == 3
    assert sorted(client.call("HKEYS", "h")) == [b"a", b"b", b"c"]
    assert dict(client.call("HGETALL", "h")) == {b"a": b"10", b"b": b"2", b"c": b"3"}
    assert client.call("HINCRBY", "h", "a", "5") == 15
    assert client.call("HINCRBYFLOAT", "h", "f", "1.5") == b"1.5"
    assert client.call("HSTRLEN", "h", "a") == 2
    assert client.call("HDEL", "h", "a", "b", "c", "f", "nope") == 4
    assert client.call("EXISTS", "h") == 0  # an emptied hash is gone


def test_hash_errors(client):
    client.call("HSET", "h", "s", "abc")
    with pytest.raises(ErrorReply, match="^ERR hash value is not an integer$"):
        client.call("HINCRBY", "h", "s", "1")
    with pytest.raises(ErrorReply, match="^ERR hash value is not a float$"):
        client.call("HINCRBYFLOAT", "h", "s", "1")
    with pytest.raises(ErrorReply, match="wrong number of arguments for 'hset'"):
        client.call("HSET", "h", "a")


def test_hrandfield_and_hscan(client):
    fields = {f"f{number}".encode(): str(number).encode() for number in range(1000)}
    client.call("HSET", "h", *[item for pair in fields.items() for item in pair])
    assert client.call("HRANDFIELD", "h") in fields
    assert len(set(client.call("HRANDFIELD", "h", "10"))) == 10
    assert len(client.call("HRANDFIELD", "h", "-2000")) == 2000
    seen = {}
    cursor = b"0"
    while True:
        cursor, flat = client.call("HSCAN", "h", cursor, "COUNT", "100")
        seen.update(zip(flat[::2], flat[1::2], strict=True))
        if cursor == b"0":
            break
    assert seen == fields


# -- lists


def test_list_commands(client):
    assert client.call("RPUSH", "l", "a", "b", "c") == 3
    assert client.call("LPUSH", "l", "z") == 4
    assert client.call("LRANGE", "l", "0", "-1") == [b"z", b"a", b"b", b"c"]
    assert client.call("LRANGE", "l", "-2", "100") == [b"b", b"c"]
    assert client.call("LINDEX", "l", "-1") == b"c"
    assert client.call("LSET", "l", "0", "y") == b"OK"
    assert client.call("LINSERT", "l", "BEFORE", "b", "x") == 5
    assert client.call("LINSERT", "l", "AFTER", "nope", "x") == -1
    assert client.call("LPOS", "l", "b") == 3
    assert client.call("LREM", "l", "0", "x") == 1
    assert client.call("LTRIM", "l", "1", "2") == b"OK"
    assert client.call("LRANGE", "l", "0", "-1") == [b"a", b"b"]
    assert client.call("LPOP", "l") == b"a"
    assert client.call("RPOP", "l", "5") == [b"b"]
    assert client.call("EXISTS", "l") == 0
    assert client.call("LPOP", "l", "2") is NULL_ARRAY
    assert client.call("LPUSHX", "l", "a") == 0


def test_list_errors(client):
    with pytest.raises(ErrorReply, match="^ERR no such key$"):
        client.call("LSET", "missing", "0", "x")
    client.call("RPUSH", "l", "a")
    with pytest.raises(ErrorReply, match="^ERR index out of range$"):
        client.call("LSET", "l", "5", "x")
    with pytest.raises(ErrorReply, match="must be positive"):
        client.call("LPOP", "l", "-1")
    with pytest.raises(ErrorReply, match="RANK can't be zero"):
        client.call("LPOS", "l", "a", "RANK", "0")


def test_lpos_options(client):
    client.call("RPUSH", "l", "a", "b", "c", "1", "2", "3", "c", "c")
    assert client.call("LPOS", "l", "c", "RANK", "2") == 6
    assert client.call("LPOS", "l", "c", "COUNT", "0") == [2, 6, 7]
    assert client.call("LPOS", "l", "c", "RANK", "-1", "COUNT", "2") == [7, 6]
    assert client.call("LPOS", "l", "c", "COUNT", "0", "MAXLEN", "3") == [2]


def test_lmove_and_rotation(client):
    client.call("RPUSH", "a", "1", "2", "3")
    assert client.call("LMOVE", "a", "b", "LEFT", "RIGHT") == b"1"
    assert client.call("RPOPLPUSH", "a", "a") == b"3"
    assert client.call("LRANGE", "a", "0", "-1") == [b"3", b"2"]
    assert client.call("LRANGE", "b", "0", "-1") == [b"1"]


def test_blocking_pop_answers_at_once_when_data_is_there(client, propagated):
    client.call("RPUSH", "q", "job")
    assert client.call("BLPOP", "empty", "q", "1") == [b"q", b"job"]
    assert propagated[-1] == (0, [b"LPOP", b"q"])


def test_blocking_pop_inside_exec_does_not_wait(client):
    client.call("MULTI")
    client.call("BLPOP", "empty", "0")
    assert client.call("EXEC") == [NULL_ARRAY]


def test_blocking_timeouts_are_validated(client):
    with pytest.raises(ErrorReply, match="^ERR timeout is negative$"):
        client.call("BLPOP", "q", "-1")
    with pytest.raises(ErrorReply, match="^ERR timeout is not a float or out of range$"):
        client.call("BLPOP", "q", "soon")


# -- sets


def test_set_commands(client, propagated):
    assert client.call("SADD", "s", "a", "b", "c") == 3
    assert client.call("SADD", "s", "a") == 0
    assert client.call("SISMEMBER", "s", "a") == 1
    assert client.call("SMISMEMBER", "s", "a", "z") == [1, 0]
    assert client.call("SCARD", "s") == 3
    client.call("SADD", "t", "b", "c", "d")
    assert sorted(client.call("SINTER", "s", "t")) == [b"b", b"c"]
    assert sorted(client.call("SUNION", "s", "t")) == [b"a", b"b", b"c", b"d"]
    assert sorted(client.call("SDIFF", "s", "t")) == [b"a"]
    assert client.call("SINTERSTORE", "u", "s", "t") == 2
    assert client.call("SINTERCARD", "2", "s", "t", "LIMIT", "1") == 1
    assert client.call("SMOVE", "s", "t", "a") == 1
    assert client.call("SREM", "s", "b", "c") == 2
    assert client.call("EXISTS", "s") == 0
    popped = client.call("SPOP", "t")
    assert propagated[-1] == (0, [b"SREM", b"t", popped])
    assert client.call("SISMEMBER", "t", popped) == 0


def test_srandmember_counts(client):
    client.call("SADD", "s", *[str(number) for number in range(50)])
    assert len(set(client.call("SRANDMEMBER", "s", "10"))) == 10
    assert len(client.call("SRANDMEMBER", "s", "-100")) == 100
    assert client.call("SCARD", "s") == 50


# -- sorted sets


def test_zadd_options(client):
    assert client.call("ZADD", "z", "1", "a", "2", "b") == 2
    assert client.call("ZADD", "z", "NX", "5", "a", "3", "c") == 1
    assert client.call("ZSCORE", "z", "a") == 1.0
    assert client.call("ZADD", "z", "XX", "CH", "10", "a", "1", "nope") == 1
    assert client.call("ZADD", "z", "GT", "CH", "5", "a") == 0
    assert client.call("ZADD", "z", "LT", "CH", "5", "a") == 1
    assert client.call("ZADD", "z", "INCR", "2.5", "a") == 7.5
    assert client.call("ZADD", "z", "NX", "INCR", "1", "a") is None
    with pytest.raises(ErrorReply, match="XX and NX"):
        client.call("ZADD", "z", "NX", "XX", "1", "a")
    with pytest.raises(ErrorReply, match="GT, LT, and/or NX"):
        client.call("ZADD", "z", "GT", "LT", "1", "a")
    with pytest.raises(ErrorReply, match="INCR option supports a single"):
        client.call("ZADD", "z", "INCR", "1", "a", "2", "b")
    with pytest.raises(ErrorReply, match="not a valid float"):
        client.call("ZADD", "z", "nan", "a")


def test_zset_ranges(client):
    client.call("ZADD", "z", "1", "a", "2", "b", "3", "c", "4", "d")
    assert client.call("ZRANGE", "z", "0", "-1") == [b"a", b"b", b"c", b"d"]
    assert client.call("ZRANGE", "z", "0", "1", "WITHSCORES") == [b"a", 1.0, b"b", 2.0]
    assert client.call("ZRANGE", "z", "(1", "3", "BYSCORE") == [b"b", b"c"]
    assert client.call("ZRANGE", "z", "+inf", "-inf", "BYSCORE", "REV", "LIMIT", "1", "2") == [b"c", b"b"]
    assert client.call("ZREVRANGE", "z", "0", "0") == [b"d"]
    assert client.call("ZRANGEBYSCORE", "z", "-inf", "+inf", "LIMIT", "2", "5") == [b"c", b"d"]
    assert client.call("ZREVRANGEBYSCORE", "z", "3", "(1") == [b"c", b"b"]
    assert client.call("ZCOUNT", "z", "(1", "+inf") == 3
    assert client.call("ZRANK", "z", "c") == 2
    assert client.call("ZREVRANK", "z", "c") == 1
    with pytest.raises(ErrorReply, match="LIMIT is only supported"):
        client.call("ZRANGE", "z", "0", "1", "LIMIT", "0", "1")
    with pytest.raises(ErrorReply, match="^ERR min or max is not a float$"):
        client.call("ZCOUNT", "z", "x", "1")


def test_zset_lex_ranges(client):
    client.call("ZADD", "z", "0", "a", "0", "b", "0", "c", "0", "d")
    assert client.call("ZRANGE", "z", "[b", "(d", "BYLEX") == [b"b", b"c"]
    assert client.call("ZRANGEBYLEX", "z", "-", "+", "LIMIT", "1", "1") == [b"b"]
    assert client.call("ZLEXCOUNT", "z", "(a", "+") == 3
    assert client.call("ZREMRANGEBYLEX", "z", "-", "[b") == 2
    with pytest.raises(ErrorReply, match="not valid string range item"):
        client.call("ZRANGEBYLEX", "z", "a", "+")


def test_zset_pops_and_removals(client, propagated):
    client.call("ZADD", "z", "1", "a", "2", "b", "3", "c", "4", "d", "5", "e")
    assert client.call("ZPOPMIN", "z") == [b"a", 1.0]
    assert propagated[-1] == (0, [b"ZREM", b"z", b"a"])
    assert client.call("ZPOPMAX", "z", "2") == [b"e", 5.0, b"d", 4.0]
    assert client.call("BZPOPMIN", "z", "0") == [b"z", b"b", 2.0]
    assert client.call("ZREMRANGEBYRANK", "z", "0", "0") == 1
    assert client.call("ZCARD", "z") == 0
    client.call("ZADD", "y", "1", "a", "2", "b", "3", "c")
    assert client.call("ZREMRANGEBYSCORE", "y", "(1", "2") == 1
    assert client.call("ZMSCORE", "y", "a", "b", "c") == [1.0, None, 3.0]
    assert client.call("ZINCRBY", "y", "2", "a") == 3.0
    assert client.call("ZREM", "y", "a", "c") == 2
    assert client.call("EXISTS", "y") == 0


def test_zscan_returns_scores_as_strings(client):
    client.call("ZADD", "z", "1.5", "a")
    assert client.call("ZSCAN", "z", "0") == [b"0", [b"a", b"1.5"]]
