"""ATLAS and a real Redis 7 answer the same client code the same way (redis-py, RESP2 and RESP3).

Each test runs against a runatlas process and against redis-server started beside it; the
expectations are Redis's behaviour, so a test that passes on Redis and fails on ATLAS is an ATLAS bug.
"""

from __future__ import annotations

import threading
import time

import pytest
import redis

from tests.e2e.atlas_processes import redis_server_available, running_atlas, running_redis

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """{"atlas": port, "redis": port} for the module; the Redis one only where redis-server is installed."""
    tmp_path = tmp_path_factory.mktemp("compat")
    ports = {}
    with running_atlas(tmp_path) as (atlas_port, _):
        ports["atlas"] = atlas_port
        if redis_server_available():
            with running_redis(tmp_path) as (redis_port, _):
                ports["redis"] = redis_port
                yield ports
        else:
            yield ports


@pytest.fixture(params=[("atlas", 2), ("atlas", 3), ("redis", 2), ("redis", 3)], ids=lambda p: f"{p[0]}-resp{p[1]}")
def r(request, servers):
    name, protocol = request.param
    if name not in servers:
        pytest.fail("redis-server is not installed: .ci/run installs it (apt redis-server)")
    client = redis.Redis(port=servers[name], protocol=protocol, socket_timeout=10)
    client.flushall()
    yield client
    client.close()


def test_strings_and_expiry(r):
    assert r.set("k", "v", ex=100) is True
    assert r.get("k") == b"v"
    assert 99 <= r.ttl("k") <= 100
    assert r.set("k", "w", nx=True) is None
    assert r.set("k", "w", xx=True, get=True) == b"v"
    assert r.incr("n") == 1
    assert r.incrbyfloat("f", 10.5) == 10.5
    assert r.incrbyfloat("f", 0.1) == pytest.approx(10.6)
    assert r.mset({"a": "1", "b": "2"}) is True
    assert r.mget("a", "b", "zz") == [b"1", b"2", None]
    assert r.append("a", "23") == 3
    assert r.getrange("a", 0, 1) == b"12"
    assert r.set("px", "v", px=50) is True
    time.sleep(0.1)
    assert r.get("px") is None


def test_errors_are_redis_errors(r):
    r.rpush("l", "x")
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        r.get("l")
    r.set("s", "abc")
    with pytest.raises(redis.ResponseError, match="not an integer or out of range"):
        r.incr("s")
    with pytest.raises(redis.ResponseError, match="wrong number of arguments"):
        r.execute_command("GET")
    with pytest.raises(redis.ResponseError, match="unknown command"):
        r.execute_command("NOSUCHCOMMAND", "x")


def test_binary_values_and_a_large_one(r):
    blob = bytes(range(256)) * 4096  # 1 MiB with every byte value
    r.set(b"\x00\xffkey", blob)
    assert r.get(b"\x00\xffkey") == blob
    assert r.strlen(b"\x00\xffkey") == len(blob)


def test_collections(r):
    assert r.hset("h", mapping={"a": "1", "b": "2"}) == 2
    assert r.hgetall("h") == {b"a": b"1", b"b": b"2"}
    assert r.hincrby("h", "a", 5) == 6
    assert r.rpush("l", "a", "b", "c") == 3
    assert r.lrange("l", 0, -1) == [b"a", b"b", b"c"]
    assert r.lmove("l", "l2", "LEFT", "RIGHT") == b"a"
    assert r.sadd("s", "x", "y") == 2
    assert r.smembers("s") == {b"x", b"y"}
    assert r.zadd("z", {"a": 1, "b": 2.5}) == 2
    assert [tuple(pair) for pair in r.zrange("z", 0, -1, withscores=True)] == [(b"a", 1.0), (b"b", 2.5)]
    assert r.zscore("z", "b") == 2.5
    assert r.zincrby("z", 1, "a") == 2.0
    popped = r.zpopmin("z")  # RESP2: [(member, score)]; RESP3: [member, score]
    assert popped in ([(b"a", 2.0)], [b"a", 2.0])
    assert r.zrangebyscore("z", "-inf", "+inf") == [b"b"]


def test_scan_iter_sees_every_key(r):
    with r.pipeline(transaction=False) as pipe:
        for number in range(1500):
            pipe.set(f"key:{number}", number)
        pipe.execute()
    assert len(set(r.scan_iter(match="key:*", count=100))) == 1500
    r.hset("big", mapping={f"f{number}": number for number in range(700)})
    assert len(dict(r.hscan_iter("big", count=50))) == 700


def test_transactional_pipeline_and_watch(r):
    with r.pipeline() as pipe:
        pipe.set("a", 1).incr("a").get("a")
        assert pipe.execute() == [True, 2, b"2"]
    other = redis.Redis(connection_pool=r.connection_pool)
    with r.pipeline() as pipe:
        pipe.watch("a")
        other.set("a", 100)
        pipe.multi()
        pipe.set("a", 0)
        with pytest.raises(redis.WatchError):
            pipe.execute()
    assert r.get("a") == b"100"


def test_pubsub(r):
    pubsub = r.pubsub()
    pubsub.subscribe("news")
    pubsub.psubscribe("n*")
    assert pubsub.get_message(timeout=2)["type"] == "subscribe"
    assert pubsub.get_message(timeout=2)["type"] == "psubscribe"
    assert r.publish("news", "hello") == 2
    messages = [pubsub.get_message(timeout=2) for _ in range(2)]
    assert {message["type"] for message in messages} == {"message", "pmessage"}
    assert all(message["data"] == b"hello" for message in messages)
    assert r.pubsub_numsub("news") == [(b"news", 1)]
    pubsub.close()


def test_blocking_pop_is_woken_by_a_push(r):
    pushed = threading.Event()

    def push_later():
        time.sleep(0.2)
        redis.Redis(connection_pool=r.connection_pool).rpush("queue", "job")
        pushed.set()

    threading.Thread(target=push_later, daemon=True).start()
    started = time.monotonic()
    assert tuple(r.blpop(["empty", "queue"], timeout=5)) == (b"queue", b"job")
    assert 0.15 < time.monotonic() - started < 4  # it waited for the push, not for the timeout
    assert pushed.wait(5)
    assert r.blpop(["queue"], timeout=0.1) is None


def test_client_setinfo_and_info_fields(r):
    r.client_setname("compat")
    assert r.client_getname() in ("compat", b"compat")
    info = r.info()
    assert info["redis_version"].startswith("7.")
    assert info["arch_bits"] == 64
    assert info["redis_mode"] == "standalone"
    assert r.info("keyspace") == {}
    r.set("k", "v")
    assert r.info("keyspace")["db0"]["keys"] == 1
    assert r.config_get("save") == {"save": ""}


def test_hello_reports_the_protocol_in_use(r):
    protocol = r.connection_pool.connection_kwargs["protocol"]
    reply = r.execute_command("HELLO")
    fields = reply if isinstance(reply, dict) else dict(zip(reply[::2], reply[1::2], strict=True))
    assert fields[b"proto"] == protocol
