"""Operations: headers forwarded, SIGHUP reload under load, SIGTERM drain, workers, metrics, logs."""

import json
import signal
import subprocess
import threading
import time

import pytest

from helios_site import config, stack
from tests.helpers import BASE_DIR, MANAGE, base_env
from tests.proxy.support import Backend, Proxy, upstream_section

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def backends(tmp_path):
    started = [Backend(name, tmp_path) for name in ("one", "two")]
    yield started
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


def test_headers_hop_by_hop_removed_forwarded_added_request_id_kept_or_made(backends, start_proxy):
    proxy = start_proxy({"backends": [backends[0].url]})
    status, headers, body = proxy.get(
        "/headers",
        headers={
            "Connection": "keep-alive, X-Secret",
            "X-Secret": "hop",
            "Keep-Alive": "timeout=5",
            "TE": "trailers",
            "Proxy-Connection": "keep-alive",
            "X-Forwarded-For": "203.0.113.7",
            "X-Request-ID": "client-id-42",
            "X-Kept": "end-to-end",
        },
    )
    seen = dict(json.loads(body)["headers"])
    assert status == 200
    for hop in ("connection", "x-secret", "keep-alive", "te", "proxy-connection"):
        assert hop not in seen, hop
    assert seen["x-kept"] == "end-to-end"
    assert seen["x-forwarded-for"] == "203.0.113.7, 127.0.0.1"
    assert seen["x-forwarded-proto"] == "http"
    assert seen["x-forwarded-host"] == f"127.0.0.1:{proxy.port}"
    assert seen["x-request-id"] == "client-id-42"
    assert headers["x-request-id"] == "client-id-42"

    _, headers, body = proxy.get("/headers", headers={"X-Request-ID": "bad id with spaces"})
    made = dict(json.loads(body)["headers"])["x-request-id"]
    assert made != "bad id with spaces"
    assert headers["x-request-id"] == made

    # one access line per request, in HELIOS's JSON log format
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and "client-id-42" not in proxy.process.output():
        time.sleep(0.05)
    lines = [json.loads(line) for line in proxy.process.output().splitlines() if '"proxy.access"' in line]
    line = next(line for line in lines if line.get("request_id") == "client-id-42")
    assert line["level"] == "INFO"
    assert line["message"] == "GET /headers 200"
    assert line["extra"]["backend"] == backends[0].url
    assert line["extra"]["status"] == 200


def test_sighup_adds_a_backend_while_a_load_runs_without_an_error(backends, start_proxy, tmp_path):
    one, two = backends
    proxy = start_proxy(upstream_section([one]))
    stop = threading.Event()
    results = []

    def load():
        conn = proxy.connection()  # one keep-alive connection each: a reload must not drop it
        while not stop.is_set():
            conn.request("GET", "/")
            response = conn.getresponse()
            results.append((response.status, response.read().decode()))
        conn.close()

    threads = [threading.Thread(target=load) for _ in range(3)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(0.4)
        proxy.reconfigure(upstream_section([one, two]))
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and "two" not in {body for _, body in results[-50:]}:
            time.sleep(0.05)
        time.sleep(0.3)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert {status for status, _ in results} == {200}
    assert {body for _, body in results} == {"one", "two"}
    assert len(proxy.status()["upstreams"][0]["backends"]) == 2

    # a broken file is refused: the running configuration stays
    proxy.config_path.write_text("proxy:\n  upstreams: {default: {backends: [not-a-url]}}\n")
    proxy.process.signal(signal.SIGHUP)
    time.sleep(0.5)
    assert "configuration refused" in proxy.process.output()
    assert len(proxy.status()["upstreams"][0]["backends"]) == 2
    assert proxy.get("/")[0] == 200


def test_sigterm_drains_requests_in_flight(backends, start_proxy):
    proxy = start_proxy({"backends": [backends[0].url]})
    result = {}

    def slow():
        result["response"] = proxy.get("/hold?ms=1000")

    thread = threading.Thread(target=slow)
    thread.start()
    time.sleep(0.3)
    proxy.process.signal(signal.SIGTERM)
    thread.join()
    status, headers, body = result["response"]
    assert (status, body) == (200, b"one")
    assert headers["connection"] == "close"
    assert proxy.process.process.wait(10) == 0
    assert '"proxy_stopped"' in proxy.process.output()


def test_workers_share_the_port_and_metrics_sum_them(backends, start_proxy):
    proxy = start_proxy({"backends": [backends[0].url]}, workers=2)
    assert len(set(proxy.worker_pids())) == 2
    for _ in range(40):
        assert proxy.get("/")[0] == 200  # a new connection each time: the kernel spreads them
    served = {worker["pid"]: worker for worker in proxy.status()["workers"]}
    assert len(served) == 2
    metrics = proxy.metrics()
    total = sum(
        int(line.rsplit(" ", 1)[1]) for line in metrics.splitlines() if line.startswith("proxy_requests_total{")
    )
    assert total == 40
    assert "proxy_workers 2" in metrics
    assert "proxy_request_duration_seconds_bucket{" in metrics
    assert 'proxy_circuit_state{upstream="default"' in metrics


def test_runproxy_refuses_a_bad_configuration_with_one_line(tmp_path):
    result = subprocess.run(
        [*MANAGE, "runproxy", "--backend", "ftp://nowhere", "--check"],
        env=base_env(HELIOS_VAR_DIR=str(tmp_path)),
        capture_output=True,
        text=True,
        cwd=BASE_DIR,
    )
    assert result.returncode != 0
    assert "expected a URL such as http://127.0.0.1:8443" in result.stderr


def test_make_run_puts_the_proxy_in_front_of_the_gateway():
    specs = {spec.name: spec for spec in stack.stack_processes(config.load({}))}
    assert "proxy" in specs
    argv = list(specs["proxy"].argv)
    assert argv[2] == "runproxy"
    assert argv[argv.index("--backend") + 1] == "http://127.0.0.1:8443"  # the gateway's address
    from proxy.conf import ProxyFlags, load_settings

    assert load_settings(ProxyFlags(), environ={}).listen == ("127.0.0.1", 8080)
