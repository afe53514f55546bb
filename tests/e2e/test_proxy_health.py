"""Health through real processes: active checks, retries, circuit breakers, outliers, 502/503/504."""

import json
import signal
import threading
import time

import pytest

from tests.proxy.support import Backend, Proxy, upstream_section

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def start_backends(tmp_path):
    started = []

    def start(*names):
        backends = [Backend(name, tmp_path) for name in names]
        started.extend(backends)
        return backends

    yield start
    for backend in started:
        backend.stop()


@pytest.fixture
def start_proxy(tmp_path):
    started = []

    def start(section, **kwargs):
        proxy = Proxy(tmp_path, section, **kwargs)
        started.append(proxy)
        return proxy

    yield start
    for proxy in started:
        proxy.stop()


def load(proxy, stop, results, path="/"):
    """Sequential GETs on one keep-alive connection until `stop`; records statuses and errors."""
    conn = proxy.connection(timeout=5)
    while not stop.is_set():
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            results.append((response.status, response.read().decode()))
        except OSError as exc:
            results.append((0, repr(exc)))
            conn.close()
            conn = proxy.connection(timeout=5)
    conn.close()


def test_a_killed_backend_is_marked_down_in_time_and_retries_hide_it(start_backends, start_proxy):
    alive, doomed = start_backends("alive", "doomed")
    proxy = start_proxy(upstream_section([alive, doomed]))  # checks every 200ms, down after 2 failures
    stop = threading.Event()
    results: list[tuple[int, str]] = []
    threads = [threading.Thread(target=load, args=(proxy, stop, results)) for _ in range(3)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(0.5)
        assert {body for _, body in results} == {"alive", "doomed"}
        doomed.process.signal(signal.SIGKILL)
        killed_at = time.monotonic()
        while proxy.backend_status(doomed.url)["healthy"]:
            assert time.monotonic() - killed_at < 3, "not marked down"
            time.sleep(0.02)
        marked_after = time.monotonic() - killed_at
        served_before = len(results)
        time.sleep(0.5)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    # interval x threshold = 0.4s, plus one check in flight and scheduling on a busy machine
    assert marked_after < 1.2, marked_after
    assert [r for r in results if r[0] != 200] == [], "a client saw the dead backend"
    assert {body for _, body in results[served_before:]} == {"alive"}
    assert "proxy_backend_healthy{" in proxy.metrics()
    assert f'proxy_backend_healthy{{upstream="default",backend="{doomed.url}"}} 0' in proxy.metrics()


def test_the_circuit_opens_half_opens_and_closes(start_backends, start_proxy):
    (backend,) = start_backends("only")
    section = upstream_section(
        [backend],
        retries=0,
        health_check={"enabled": False},
        outlier_detection={"enabled": False},
        circuit_breaker={"consecutive_failures": 3, "cooldown": "1s", "half_open_probes": 2},
    )
    proxy = start_proxy(section)

    def circuit():
        return proxy.backend_status(backend.url)["circuit"]

    assert proxy.get("/")[0] == 200
    assert circuit() == "closed"
    backend.get("/admin/fail?status=500&count=3")
    assert [proxy.get("/")[0] for _ in range(3)] == [500, 500, 500]
    assert circuit() == "open"
    assert f'proxy_circuit_state{{upstream="default",backend="{backend.url}"}} 2' in proxy.metrics()

    hits = backend.hits()
    status, headers, body = proxy.get("/")
    assert status == 503
    assert headers["content-type"] == "application/json"
    assert json.loads(body)["code"] == "no_healthy_backend"
    assert backend.hits() == hits, "an open circuit sends nothing to the backend"

    time.sleep(1.1)
    assert circuit() == "half_open"
    assert proxy.get("/")[0] == 200
    assert circuit() == "half_open", "one probe of two"
    assert proxy.get("/")[0] == 200
    assert circuit() == "closed"

    backend.get("/admin/fail?status=500&count=4")
    assert [proxy.get("/")[0] for _ in range(3)] == [500, 500, 500]
    time.sleep(1.1)
    assert circuit() == "half_open"
    assert proxy.get("/")[0] == 500, "the probe fails"
    assert circuit() == "open", "a failed probe opens the circuit again"


def test_idempotent_requests_are_retried_on_another_backend_after_a_503(start_backends, start_proxy):
    first, second, third = start_backends("first", "second", "third")
    proxy = start_proxy(upstream_section([first, second, third], algorithm="round_robin"))
    first.get("/admin/fail?status=503&count=1")
    second.get("/admin/fail?status=503&count=1")
    status, _, body = proxy.get("/")
    assert (status, body) == (200, b"third"), "first 503 -> second 503 -> third, within 2 retries"
    assert 'proxy_retries_total{upstream="default"} 2' in proxy.metrics()

    first.get("/admin/fail?status=503&count=1")
    conn = proxy.connection()
    conn.request("POST", "/", body=b"data")  # not idempotent: never sent twice
    response = conn.getresponse()
    assert response.status == 503
    assert response.read() == b'{"failed": true}'
    conn.close()


def test_no_backend_left_answers_502_and_a_slow_one_504_in_json(start_backends, start_proxy):
    (backend,) = start_backends("slow")
    proxy = start_proxy({**upstream_section([backend], health_check={"enabled": False}), "request_timeout": "1s"})
    status, _, body = proxy.get("/hold?ms=3000")
    assert status == 504
    assert json.loads(body)["code"] == "upstream_timeout"

    backend.stop()
    status, headers, body = proxy.get("/")
    assert status == 502
    assert headers["content-type"] == "application/json"
    assert json.loads(body)["code"] == "bad_gateway"
    assert "x-request-id" in headers


def test_outliers_are_ejected_on_errors_and_on_latency(start_backends, start_proxy):
    good, flaky, slow = start_backends("good", "flaky", "slow")
    section = upstream_section(
        [good, flaky, slow],
        retries=0,
        health_check={"enabled": False},
        outlier_detection={
            "consecutive_errors": 3,
            "latency_threshold": "100ms",
            "ejection_time": "30s",
            "max_ejected_percent": 70,
        },
        circuit_breaker={"consecutive_failures": 100},
    )
    proxy = start_proxy(section)
    flaky.get("/admin/fail?status=502&count=100")
    slow.get("/admin/delay?ms=150")
    for _ in range(18):
        proxy.get("/")
    assert proxy.backend_status(flaky.url)["ejected"]
    assert proxy.backend_status(slow.url)["ejected"]
    assert not proxy.backend_status(good.url)["ejected"]
    assert {proxy.get("/")[2] for _ in range(5)} == {b"good"}
