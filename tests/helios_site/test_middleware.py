import json
import logging

import pytest
from prometheus_client import REGISTRY

from helios_site.logs import JsonFormatter, RequestContextFilter

pytestmark = pytest.mark.django_db


def request_count(method, route, status):
    value = REGISTRY.get_sample_value(
        "helios_requests_total", {"method": method, "route": route, "status": str(status)}
    )
    return value or 0.0


def test_a_request_id_is_generated_and_echoed(client):
    response = client.get("/healthz")
    assert len(response["X-Request-ID"]) == 32


def test_a_sane_client_request_id_is_kept(client):
    response = client.get("/healthz", HTTP_X_REQUEST_ID="abc-123.def")
    assert response["X-Request-ID"] == "abc-123.def"


@pytest.mark.parametrize("offered", ["has space", "x" * 200, "new\nline", "<script>"])
def test_an_insane_client_request_id_is_replaced(client, offered):
    response = client.get("/healthz", HTTP_X_REQUEST_ID=offered)
    assert response["X-Request-ID"] != offered
    assert len(response["X-Request-ID"]) == 32


def test_requests_are_counted_by_route_template_not_raw_path(client):
    before_me = request_count("GET", "/api/v1/auth/me", 401)
    before_unmatched = request_count("GET", "<unmatched>", 404)

    client.get("/api/v1/auth/me")
    client.get("/api/v1/auth/me")
    client.get("/no/such/page/1")
    client.get("/no/such/page/2")

    assert request_count("GET", "/api/v1/auth/me", 401) == before_me + 2
    assert request_count("GET", "<unmatched>", 404) == before_unmatched + 2


def test_the_duration_histogram_observes_each_request(client):
    labels = {"method": "GET", "route": "/healthz", "status": "200"}
    before = REGISTRY.get_sample_value("helios_request_duration_seconds_count", labels) or 0.0
    client.get("/healthz")
    assert REGISTRY.get_sample_value("helios_request_duration_seconds_count", labels) == before + 1


def test_each_request_writes_one_json_access_line_with_its_request_id(client, caplog):
    caplog.set_level(logging.INFO, logger="helios.access")
    caplog.handler.addFilter(RequestContextFilter())  # as the stdout handler of settings.LOGGING does
    client.get("/healthz", HTTP_X_REQUEST_ID="trace-me")

    records = [record for record in caplog.records if record.name == "helios.access"]
    assert len(records) == 1
    line = json.loads(JsonFormatter().format(records[0]))
    assert line["request_id"] == "trace-me"
    assert line["message"] == "GET /healthz 200"
    assert line["extra"]["route"] == "/healthz"
    assert line["extra"]["status"] == 200
