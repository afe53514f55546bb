"""The KV API and the rate limiter as they run for real: gunicorn with 2 uvicorn workers, runatlas,
HTTP on loopback. One gateway and one ATLAS serve the whole module; ATLAS is killed and restarted on
its port in the middle of a test."""

from __future__ import annotations

import contextlib
import http.client
import json
import signal
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests
from prometheus_client.mmap_dict import MmapedDict

from tests.e2e.atlas_processes import running_atlas
from tests.helpers import MANAGE, ManagedProcess, base_env, free_port, migrate, scratch_database_url, wait_for_http

pytestmark = [pytest.mark.database, pytest.mark.timeout(120)]

CAPACITY = 20  # every client's bucket; one token an hour, so nothing refills during the module
CONCURRENT = 50  # at least twice CAPACITY (see the exactness test)
PASSWORD = "e2e-gateway-password-long"
KV_ROUTE = "/api/v1/kv/<kvkey:key>"


class Atlas:
    """runatlas on a fixed port that a test may kill -9 and start again."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.port = free_port()
        self._stack = contextlib.ExitStack()
        self.process: ManagedProcess | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        _, self.process = self._stack.enter_context(running_atlas(self.tmp_path, port=self.port))

    def kill(self) -> None:
        assert self.process is not None
        self.process.signal(signal.SIGKILL)
        self.process.process.wait(10)
        self._stack.close()

    def stop(self) -> None:
        self._stack.close()


@dataclass
class Gateway:
    url: str
    process: ManagedProcess
    atlas: Atlas
    metrics_dir: Path
    addresses: list[int] = field(default_factory=lambda: [0])

    def user(self, name: str) -> dict[str, str]:
        """Register and log in `name` (each from an address of its own, forwarded by a trusted
        proxy, so that the anonymous buckets never run dry); the Authorization header."""
        self.addresses[0] += 1
        forwarded = {"X-Forwarded-For": f"198.51.100.{self.addresses[0]}"}
        body = {"username": name, "password": PASSWORD}
        registered = requests.post(f"{self.url}/api/v1/auth/register", json=body, headers=forwarded, timeout=30)
        assert registered.status_code == 201, registered.text
        login = requests.post(f"{self.url}/api/v1/auth/login", json=body, headers=forwarded, timeout=30)
        assert login.status_code == 200, login.text
        return {"Authorization": f"Bearer {login.json()['token']}"}

    def kv(self, key: str) -> str:
        return f"{self.url}/api/v1/kv/{key}"

    def requests_by_worker(self) -> dict[str, Counter[str]]:
        """helios_requests_total of the KV route, per worker process (pid) and status."""
        per_worker: dict[str, Counter[str]] = {}
        for path in self.metrics_dir.glob("counter_*.db"):
            counts: Counter[str] = Counter()
            for key, value, _timestamp, _pos in MmapedDict.read_all_values_from_file(str(path)):
                metric, _name, labels, _help = json.loads(key)
                if metric == "helios_requests" and labels.get("route") == KV_ROUTE:
                    counts[labels["status"]] += int(value)
            if counts:
                per_worker[path.stem.split("_")[1]] = counts
        return per_worker


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    """ATLAS, gunicorn and the migration start side by side (the gateway needs the database only to
    answer requests); then the module's tests share them."""
    tmp_path = tmp_path_factory.mktemp("gateway-kv")
    atlas = Atlas(tmp_path)
    starting_atlas = threading.Thread(target=atlas.start)
    starting_atlas.start()
    try:
        with scratch_database_url(tmp_path) as database_url:
            env = base_env(
                HELIOS_VAR_DIR=str(tmp_path / "var"),
                DATABASE_URL=database_url,
                HELIOS_ATLAS_URL=atlas.url,
                HELIOS_ATLAS_RETRY_BACKOFF="10ms",
                HELIOS_GATEWAY_RATE_LIMIT_DEFAULT_CAPACITY=str(CAPACITY),
                HELIOS_GATEWAY_RATE_LIMIT_DEFAULT_RATE_NUM="1",
                HELIOS_GATEWAY_RATE_LIMIT_DEFAULT_RATE_DEN="3600",
            )
            port = free_port()
            process = ManagedProcess(
                [*MANAGE, "rungateway", "--listen", f"127.0.0.1:{port}", "--workers", "2"], env, tmp_path / "gw.log"
            )
            try:
                migrate(env)
                starting_atlas.join()
                assert atlas.process is not None, "runatlas did not start"
                url = f"http://127.0.0.1:{port}"
                wait_for_http(f"{url}/healthz", process)
                yield Gateway(url, process, atlas, tmp_path / "var" / "prometheus" / f"gateway-{port}")
            finally:
                process.stop()
    finally:
        starting_atlas.join()
        atlas.stop()


def fresh(method: str, url: str, **kwargs) -> requests.Response:
    """One request on a connection of its own, so that requests spread over the workers."""
    headers = {**kwargs.pop("headers", {}), "Connection": "close"}
    return requests.request(method, url, headers=headers, timeout=30, **kwargs)


def test_kv_round_trip_over_http(gateway):
    auth = gateway.user("alice")
    created = fresh("PUT", gateway.kv("greeting%2Fen"), json={"value": "hello", "ttl": 3600}, headers=auth)
    assert created.status_code == 201, created.text
    assert created.headers["RateLimit-Policy"] == f'"user";q={CAPACITY};w={CAPACITY * 3600}'
    read = fresh("GET", gateway.kv("greeting/en"), headers=auth)
    assert read.status_code == 200
    assert read.json()["value"] == "hello"
    assert 3590 <= read.json()["ttl"] <= 3600
    assert fresh("GET", f"{gateway.url}/api/v1/kv/?prefix=greeting", headers=auth).json()["keys"] == ["greeting/en"]
    assert fresh("DELETE", gateway.kv("greeting%2Fen"), headers=auth).status_code == 204
    assert fresh("GET", gateway.kv("greeting%2Fen"), headers=auth).status_code == 404


def test_exactly_capacity_of_concurrent_requests_succeed_across_both_workers(gateway):
    """50 requests at once against a bucket of 20 that does not refill: exactly 20 pass. Both workers
    answer some, and one of them at least 25, so per-worker buckets would have let more than 20 through."""
    auth = gateway.user("bob")
    before = gateway.requests_by_worker()
    with ThreadPoolExecutor(max_workers=CONCURRENT) as pool:
        responses = list(pool.map(lambda _: fresh("GET", gateway.kv("bob-key"), headers=auth), range(CONCURRENT)))
    statuses = Counter(response.status_code for response in responses)
    assert statuses == {404: CAPACITY, 429: CONCURRENT - CAPACITY}, statuses
    for response in responses:
        if response.status_code == 429:
            assert response.json()["code"] == "throttled"
            assert int(response.headers["Retry-After"]) > 0
            assert response.headers["X-RateLimit-Remaining"] == "0"
    after = gateway.requests_by_worker()
    answered = {pid: sum(counts.values()) - sum(before.get(pid, Counter()).values()) for pid, counts in after.items()}
    assert sum(answered.values()) == CONCURRENT, answered
    assert len([pid for pid, count in answered.items() if count]) == 2, f"both workers should answer: {answered}"


def test_remaining_counts_down_across_workers(gateway):
    """Sequential requests, each on a new connection: whichever worker answers, the count goes on
    from the last answer, and the request after the last token is refused."""
    auth = gateway.user("carol")
    remaining, workers = [], []
    for _ in range(CAPACITY):
        before = gateway.requests_by_worker()
        response = fresh("GET", gateway.kv("carol-key"), headers=auth)
        assert response.status_code == 404
        remaining.append(int(response.headers["X-RateLimit-Remaining"]))
        workers.append(next(pid for pid, counts in gateway.requests_by_worker().items() if counts != before.get(pid)))
    assert len(set(workers)) == 2, f"both workers should have answered: {workers}"
    assert remaining == list(range(CAPACITY - 1, -1, -1)), list(zip(workers, remaining, strict=True))
    assert fresh("GET", gateway.kv("carol-key"), headers=auth).status_code == 429


def test_atlas_killed_mid_test_is_503_and_restarted_is_200_again(gateway):
    auth = gateway.user("dora")
    assert fresh("PUT", gateway.kv("dora-key"), json={"value": "v"}, headers=auth).status_code == 201
    results: list[tuple[float, int, str]] = []
    stop = threading.Event()

    def writer() -> None:
        deadline = time.monotonic() + 60
        while not stop.is_set() and time.monotonic() < deadline:
            started = time.monotonic()
            response = fresh("PUT", gateway.kv("dora-key"), json={"value": "v"}, headers=auth)
            results.append((started, response.status_code, response.headers.get("Retry-After", "")))
            time.sleep(0.1)  # slow enough that the bucket (no refill) outlasts the test

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        time.sleep(0.3)
        gateway.atlas.kill()
        while sum(1 for _, status, _ in results if status == 503) < 3:
            time.sleep(0.05)
        readyz = requests.get(f"{gateway.url}/readyz", timeout=10)
        assert readyz.status_code == 503
        assert readyz.json()["checks"]["atlas"].startswith("error")
        gateway.atlas.start()
        restarted = time.monotonic()
        while sum(1 for started, _, _ in results if started > restarted) < 4:
            time.sleep(0.05)
    finally:
        stop.set()
        thread.join()

    statuses = [status for _, status, _ in results]
    assert set(statuses) <= {200, 201, 503}, Counter(statuses)
    assert all(retry_after == "1" for _, status, retry_after in results if status == 503)
    after = [status for started, status, _ in results if started > restarted]
    assert set(after) <= {200, 201}, f"after the restart: {after}"
    assert requests.get(f"{gateway.url}/readyz", timeout=10).status_code == 200
    assert fresh("GET", gateway.kv("dora-key"), headers=auth).json()["value"] == "v"

    metrics = requests.get(f"{gateway.url}/metrics", timeout=10).text
    assert 'rate_limiter_unavailable_total{mode="open"}' in metrics


def test_denials_are_counted_in_metrics_across_workers(gateway):
    metrics = requests.get(f"{gateway.url}/metrics", timeout=10).text
    denied = [line for line in metrics.splitlines() if line.startswith('rate_limiter_denied_total{scope="user"}')]
    assert denied, metrics[-2000:]
    assert float(denied[0].split()[-1]) >= CONCURRENT - CAPACITY + 1


def anonymous_remaining(port: int, source: str, forwarded: str) -> tuple[int, str]:
    """GET /api/v1/auth/me without a token from the loopback address `source`, claiming to forward for
    `forwarded`; (status, X-RateLimit-Remaining)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30, source_address=(source, 0))
    try:
        connection.request("GET", "/api/v1/auth/me", headers={"X-Forwarded-For": forwarded})
        response = connection.getresponse()
        response.read()
        return response.status, response.getheader("X-RateLimit-Remaining", "")
    finally:
        connection.close()


def test_behind_the_helios_proxy_each_client_has_its_own_bucket(gateway, tmp_path):
    """The proxy (on 127.0.0.1, trusted) appends the client's address; clients on 127.0.0.3 and
    127.0.0.4 are not trusted, so what they claim in X-Forwarded-For is not believed."""
    from tests.proxy.support import Proxy

    proxy = Proxy(tmp_path, {}, args=("--backend", gateway.url))
    try:
        gateway_port = int(gateway.url.rsplit(":", 1)[1])
        assert anonymous_remaining(proxy.port, "127.0.0.3", "203.0.113.50") == (401, str(CAPACITY - 1))
        # Straight to the gateway from the same client, with the same claim: the same bucket.
        assert anonymous_remaining(gateway_port, "127.0.0.3", "203.0.113.50") == (401, str(CAPACITY - 2))
        assert anonymous_remaining(proxy.port, "127.0.0.3", "203.0.113.51") == (401, str(CAPACITY - 3))
        # Another client through the proxy: a bucket of its own.
        assert anonymous_remaining(proxy.port, "127.0.0.4", "203.0.113.50") == (401, str(CAPACITY - 1))
    finally:
        proxy.stop()
