"""Each balancing algorithm's distribution, through a real proxy to three real backends.

One proxy serves five upstreams over the same three backends, one per algorithm, routed by host.
"""

import collections
import threading
import time

import pytest

from tests.proxy.support import Backend, Proxy

pytestmark = pytest.mark.timeout(60)

ALGORITHMS = {
    "rr.test": "round_robin",
    "wrr.test": "weighted_round_robin",
    "lc.test": "least_connections",
    "p2c.test": "power_of_two",
    "hash.test": "consistent_hash",
}


@pytest.fixture(scope="module")
def backends(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("balancing")
    started = [Backend(name, tmp) for name in ("a", "b", "c")]
    yield started
    for backend in started:
        backend.stop()


@pytest.fixture(scope="module")
def proxy(backends, tmp_path_factory):
    weights = {"a": 1, "b": 2, "c": 3}
    upstreams = {}
    for _host, algorithm in ALGORITHMS.items():
        upstreams[algorithm] = {
            "algorithm": algorithm,
            "backends": [
                {"url": b.url, "weight": weights[b.name] if algorithm == "weighted_round_robin" else 1}
                for b in backends
            ],
            "hash_key": "header:X-User" if algorithm == "consistent_hash" else "client_ip",
            "health_check": {"interval": "1s"},
        }
    routes = [{"host": host, "upstream": algorithm} for host, algorithm in ALGORITHMS.items()]
    started = Proxy(tmp_path_factory.mktemp("balancing-proxy"), {"upstreams": upstreams, "routes": routes})
    yield started
    started.stop()


def names(proxy, host, count, headers=None):
    """The backend names that served `count` sequential requests on one keep-alive connection."""
    conn = proxy.connection()
    served = []
    for _ in range(count):
        conn.request("GET", "/", headers={"Host": host, **(headers or {})})
        response = conn.getresponse()
        assert response.status == 200
        served.append(response.read().decode())
    conn.close()
    return served


def test_round_robin_takes_each_backend_in_turn(proxy):
    served = names(proxy, "rr.test", 30)
    assert collections.Counter(served) == {"a": 10, "b": 10, "c": 10}
    assert len(set(served[0:3])) == 3  # in turn, not in runs


def test_weighted_round_robin_follows_the_weights_smoothly(proxy):
    served = names(proxy, "wrr.test", 60)
    assert collections.Counter(served) == {"a": 10, "b": 20, "c": 30}
    for start in range(0, 60, 6):  # every cycle of total weight 6 has exact shares, interleaved
        window = served[start : start + 6]
        assert collections.Counter(window) == {"a": 1, "b": 2, "c": 3}, window
        assert "ccc" not in "".join(window)


def hold_one(proxy, host, milliseconds=1500):
    """Start a slow request in a thread; returns (thread, backend name holding it)."""
    result = {}

    def slow():
        result["response"] = proxy.get(f"/hold?ms={milliseconds}", headers={"Host": host})

    thread = threading.Thread(target=slow)
    thread.start()
    upstream = ALGORITHMS[host]
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        for up in proxy.status()["upstreams"]:
            if up["name"] == upstream:
                busy = [b["url"] for b in up["backends"] if b["active_requests"] == 1]
                if busy:
                    return thread, busy[0]
        time.sleep(0.02)
    raise AssertionError("the slow request never became active")


@pytest.mark.parametrize("host", ["lc.test", "p2c.test"])
def test_a_busy_backend_is_avoided(proxy, backends, host):
    thread, busy_url = hold_one(proxy, host)
    busy = next(b.name for b in backends if b.url == busy_url)
    served = collections.Counter(names(proxy, host, 20))
    thread.join()
    assert served[busy] == 0, served
    assert sum(served.values()) == 20
    if host == "lc.test":
        idle = [b.name for b in backends if b.name != busy]
        assert served == {idle[0]: 10, idle[1]: 10}, "ties between idle backends go round robin"


def test_power_of_two_spreads_idle_load(proxy):
    served = collections.Counter(names(proxy, "p2c.test", 300))
    assert set(served) == {"a", "b", "c"}
    assert all(50 <= count <= 150 for count in served.values()), served


def test_consistent_hash_keeps_a_key_on_one_backend(proxy):
    keys = [f"user-{i}" for i in range(60)]
    first = {key: names(proxy, "hash.test", 1, {"X-User": key})[0] for key in keys}
    again = {key: names(proxy, "hash.test", 2, {"X-User": key}) for key in keys}
    assert all(again[key] == [first[key], first[key]] for key in keys)
    spread = collections.Counter(first.values())
    assert set(spread) == {"a", "b", "c"}
    assert min(spread.values()) >= 6, spread
