import pytest

from helios_site import health

pytestmark = pytest.mark.django_db


def test_healthz_answers_while_the_process_serves(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_checks_the_database(client):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "checks": {"database": "ok"}}


def test_readyz_is_503_when_a_check_fails(client, monkeypatch):
    def database_down() -> None:
        raise ConnectionRefusedError("connection refused")

    monkeypatch.setitem(health.READINESS_CHECKS, "database", database_down)
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json() == {"status": "unavailable", "checks": {"database": "error: ConnectionRefusedError"}}


def test_probes_refuse_other_methods(client):
    assert client.post("/healthz").status_code == 405


def test_metrics_are_exposed_in_prometheus_format(client):
    client.get("/healthz")
    response = client.get("/metrics")
    assert response.status_code == 200
    body = response.content.decode()
    assert "# TYPE helios_requests_total counter" in body
    assert "# TYPE helios_request_duration_seconds histogram" in body
    assert 'helios_requests_total{method="GET",route="/healthz",status="200"}' in body


@pytest.mark.postgres
def test_the_postgres_pass_runs_on_postgresql(database_vendor):
    assert database_vendor == "postgresql"
