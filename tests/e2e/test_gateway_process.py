"""The gateway as it runs for real: gunicorn with uvicorn workers, over HTTP, on loopback."""

import json
import re
import time
from pathlib import Path

import pytest
import requests

pytestmark = [pytest.mark.database, pytest.mark.timeout(90)]

PASSWORD = "e2e-password-that-is-long"


def test_register_login_me_logout_over_http(start_gateway):
    url, _ = start_gateway()
    api = f"{url}/api/v1/auth"

    registered = requests.post(f"{api}/register", json={"username": "carol", "password": PASSWORD}, timeout=10)
    assert registered.status_code == 201, registered.text
    user_id = registered.json()["user_id"]

    login = requests.post(f"{api}/login", json={"username": "carol", "password": PASSWORD}, timeout=10)
    assert login.status_code == 200, login.text
    tokens = login.json()
    assert tokens["user_id"] == user_id
    auth = {"Authorization": f"Bearer {tokens['token']}"}

    me = requests.get(f"{api}/me", headers=auth, timeout=10)
    assert me.status_code == 200
    assert me.json()["username"] == "carol"

    logout = requests.post(f"{api}/logout", json={"refresh": tokens["refresh"]}, headers=auth, timeout=10)
    assert logout.status_code == 204

    # Another worker process may answer: the denylist is shared through the database.
    for _ in range(6):
        after = requests.get(f"{api}/me", headers=auth, timeout=10)
        assert after.status_code == 401
        assert after.json()["code"] == "token_revoked"
    refresh = requests.post(f"{api}/refresh", json={"refresh": tokens["refresh"]}, timeout=10)
    assert refresh.status_code == 401


def test_admin_docs_and_static_files_are_served(start_gateway):
    url, _ = start_gateway(workers=1)
    login_page = requests.get(f"{url}/admin/login/", timeout=10)
    assert login_page.status_code == 200
    assert "HELIOS" in login_page.text
    css = re.search(r'href="(/static/admin/css/[^"]+\.css)"', login_page.text)
    assert css, login_page.text[:500]
    assert requests.get(url + css.group(1), timeout=10).status_code == 200

    docs = requests.get(f"{url}/api/docs/", timeout=10)
    assert docs.status_code == 200
    bundle = re.search(r'src="(/static/drf_spectacular_sidecar/[^"]+\.js)"', docs.text)
    assert bundle, docs.text[:500]
    assert requests.get(url + bundle.group(1), timeout=10).status_code == 200
    assert requests.get(f"{url}/api/schema/", timeout=10).status_code == 200


def scrape(url: str, route: str) -> float:
    body = requests.get(f"{url}/metrics", timeout=10).text
    pattern = re.compile(
        r'^helios_requests_total\{method="GET",route="' + re.escape(route) + r'",status="200"\} (\S+)$', re.M
    )
    match = pattern.search(body)
    return float(match.group(1)) if match else 0.0


def test_metrics_sum_every_gunicorn_worker(start_gateway, gateway_env):
    url, _ = start_gateway(workers=3)
    requests_sent = 60
    for _ in range(requests_sent):
        # a new connection each time, so that the requests spread over the workers
        assert requests.get(f"{url}/healthz", headers={"Connection": "close"}, timeout=10).status_code == 200

    port = url.rsplit(":", 1)[1]
    metrics_dir = Path(gateway_env["HELIOS_VAR_DIR"]) / "prometheus" / f"gateway-{port}"
    assert len(list(metrics_dir.glob("counter_*.db"))) >= 2, "the requests should have reached several workers"
    counts = {scrape(url, "/healthz") for _ in range(10)}
    # wait_for_http made one /healthz request too; every scrape, whichever worker answers, agrees.
    assert counts == {requests_sent + 1.0}, counts


def test_logs_are_json_lines_with_request_ids(start_gateway):
    url, process = start_gateway(workers=1)
    response = requests.get(f"{url}/healthz", headers={"X-Request-ID": "e2e-request-1"}, timeout=10)
    assert response.headers["X-Request-ID"] == "e2e-request-1"
    deadline = time.monotonic() + 10
    while "e2e-request-1" not in process.output() and time.monotonic() < deadline:
        time.sleep(0.1)
    lines = [line for line in process.output().splitlines() if line.strip()]
    parsed = [json.loads(line) for line in lines]  # every line is JSON, gunicorn's own included
    access = [line for line in parsed if line.get("request_id") == "e2e-request-1"]
    assert len(access) == 1
    assert {"timestamp", "level", "component", "message", "extra"} <= set(access[0])
    assert access[0]["component"] == "helios.access"
    assert any(line["component"].startswith("gunicorn") for line in parsed)


def test_requests_are_traced_when_otel_is_configured(start_gateway):
    url, process = start_gateway(workers=1, OTEL_TRACES_EXPORTER="console", OTEL_BSP_SCHEDULE_DELAY="100")
    requests.get(f"{url}/readyz", headers={"X-Request-ID": "traced-1"}, timeout=10)
    deadline = time.monotonic() + 10
    while '"http.route": "readyz"' not in process.output() and time.monotonic() < deadline:
        time.sleep(0.1)
    output = process.output()
    assert '"http.route": "readyz"' in output, output[-3000:]
    access = next(
        json.loads(line) for line in output.splitlines() if line.startswith("{") and '"request_id": "traced-1"' in line
    )
    assert re.fullmatch(r"[0-9a-f]{32}", access["trace_id"])
    assert f'"trace_id": "0x{access["trace_id"]}"' in output


def test_tracing_is_off_by_default(start_gateway):
    url, process = start_gateway(workers=1)
    requests.get(f"{url}/healthz", headers={"X-Request-ID": "untraced-1"}, timeout=10)
    time.sleep(0.5)
    line = next(json.loads(item) for item in process.output().splitlines() if "untraced-1" in item)
    assert "trace_id" not in line
