"""The gateway's rate limiter, in process, against a real runatlas: buckets, headers, 429s, overrides,
and what happens when ATLAS cannot be reached."""

from __future__ import annotations

import re
import time

import pytest
from prometheus_client import REGISTRY

from accounts.conf import RatePolicy
from accounts.models import Role
from accounts.selectors import user_rate_policy
from tests.gateway import client_for, make_role, make_user, reset_gateway_caches
from tests.helpers import free_port

pytestmark = pytest.mark.django_db

ME = "/api/v1/auth/me"
KV_KEY = "/api/v1/kv/some-key"
RATE_HEADERS = ("RateLimit-Policy", "RateLimit", "X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset")


def limits(monkeypatch, capacity: int, rate_num: int = 1, rate_den: int = 3600, **more: str) -> None:
    """Set the default policy (no refill to speak of unless asked) and forget the cached settings."""
    monkeypatch.setenv("HELIOS_GATEWAY_RATE_LIMIT_DEFAULT_CAPACITY", str(capacity))
    monkeypatch.setenv("HELIOS_GATEWAY_RATE_LIMIT_DEFAULT_RATE_NUM", str(rate_num))
    monkeypatch.setenv("HELIOS_GATEWAY_RATE_LIMIT_DEFAULT_RATE_DEN", str(rate_den))
    for name, value in more.items():
        monkeypatch.setenv(name, value)
    reset_gateway_caches()


def counter(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def remaining(response) -> int:
    return int(response["X-RateLimit-Remaining"])


def test_every_counted_response_carries_the_draft_and_x_headers(atlas_url, monkeypatch):
    limits(monkeypatch, capacity=5, rate_num=1, rate_den=2)
    client = client_for(make_user("alice", "user"))
    first = client.get(ME)
    assert first.status_code == 200
    assert first["RateLimit-Policy"] == '"user";q=5;w=10'
    assert re.fullmatch(r'"user";r=4;t=\d+', first["RateLimit"])
    assert first["X-RateLimit-Limit"] == "5"
    assert first["X-RateLimit-Remaining"] == "4"
    assert 1 <= int(first["X-RateLimit-Reset"]) <= 2
    second = client.get(KV_KEY)  # a 404 is counted and carries them too
    assert second.status_code == 404
    assert remaining(second) == 3
    assert second["RateLimit"].startswith('"user";r=3;')


def test_a_refusal_is_429_with_retry_after_and_a_json_body(atlas_url, monkeypatch):
    limits(monkeypatch, capacity=3)
    client = client_for(make_user("alice", "user"))
    before = counter("rate_limiter_denied_total", scope="user")
    assert [client.get(ME).status_code for _ in range(3)] == [200, 200, 200]
    refused = client.get(ME)
    assert refused.status_code == 429
    body = refused.json()
    assert body["code"] == "throttled"
    assert "throttled" in body["detail"].lower()
    assert int(refused["Retry-After"]) >= 3000  # one request per hour
    assert refused["X-RateLimit-Remaining"] == "0"
    assert refused["RateLimit"].startswith('"user";r=0;')
    assert counter("rate_limiter_denied_total", scope="user") == before + 1


def test_the_bucket_refills_at_the_configured_rate(atlas_url, monkeypatch):
    limits(monkeypatch, capacity=2, rate_num=1, rate_den=1)
    client = client_for(make_user("alice", "user"))
    assert [client.get(ME).status_code for _ in range(2)] == [200, 200]
    refused = client.get(ME)
    assert refused.status_code == 429
    assert refused["Retry-After"] == "1"
    time.sleep(1.05)
    assert client.get(ME).status_code == 200, "one token came back after a second"
    assert client.get(ME).status_code == 429, "and only one"


def test_anonymous_clients_are_limited_by_address_and_trusted_forwarding_separates_them(atlas_url, monkeypatch):
    limits(monkeypatch, capacity=2)
    before = counter("rate_limiter_denied_total", scope="ip")
    direct = client_for(REMOTE_ADDR="198.51.100.7")
    # Behind the proxy (loopback is trusted by default), two clients are two buckets.
    proxied_a = client_for(REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="203.0.113.1")
    proxied_b = client_for(REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="203.0.113.2")
    responses = [direct.get(ME) for _ in range(3)]
    assert [response.status_code for response in responses] == [401, 401, 429]
    assert responses[2]["RateLimit-Policy"] == '"ip";q=2;w=7200'
    assert [proxied_a.get(ME).status_code for _ in range(3)] == [401, 401, 429]
    assert proxied_b.get(ME).status_code == 401
    # A client that is not a proxy cannot choose its bucket by claiming to forward for someone.
    forging = client_for(REMOTE_ADDR="198.51.100.7", HTTP_X_FORWARDED_FOR="203.0.113.99")
    assert forging.get(ME).status_code == 429
    assert counter("rate_limiter_denied_total", scope="ip") == before + 3


def test_a_request_is_counted_before_its_token_or_permission_is_refused(atlas_url, monkeypatch):
    limits(monkeypatch, capacity=2)
    make_role("nothing", permissions=())
    bad_token = client_for(REMOTE_ADDR="198.51.100.8", HTTP_AUTHORIZATION="Bearer forged")
    first = bad_token.get(KV_KEY)
    assert first.status_code == 401
    assert first["X-RateLimit-Remaining"] == "1"
    assert bad_token.get(KV_KEY).status_code == 401
    assert bad_token.get(KV_KEY).status_code == 429, "token guessing is rate limited too"

    forbidden = client_for(make_user("nobody", "nothing"))
    denied = forbidden.get(KV_KEY)
    assert denied.status_code == 403
    assert denied["X-RateLimit-Remaining"] == "1"


def test_users_have_their_own_buckets(atlas_url, monkeypatch):
    limits(monkeypatch, capacity=1)
    alice = client_for(make_user("alice", "user"))
    bob = client_for(make_user("bob", "user"))
    assert alice.get(ME).status_code == 200
    assert alice.get(ME).status_code == 429
    assert bob.get(ME).status_code == 200


def test_role_overrides_pick_the_most_generous_policy(atlas_url, monkeypatch):
    limits(monkeypatch, capacity=2, rate_num=1, rate_den=60)
    make_role("bulk", rate_limit_capacity=10)  # rate from the defaults
    make_role("fast", rate_limit_rate_num=5, rate_limit_rate_den=1)  # capacity from the defaults
    default = RatePolicy(2, 1, 60)
    assert user_rate_policy(user=make_user("plain", "user"), default=default) == default
    bulk = make_user("bulky", "bulk")
    assert user_rate_policy(user=bulk, default=default) == RatePolicy(10, 1, 60)
    both = make_user("both", "bulk", "fast", "user")
    assert user_rate_policy(user=both, default=default) == RatePolicy(2, 5, 1), "the higher rate wins"

    client = client_for(bulk)
    statuses = [client.get(ME).status_code for _ in range(11)]
    assert statuses == [200] * 10 + [429]
    assert client.get(ME)["RateLimit-Policy"] == '"user";q=10;w=600'


def test_overrides_are_edited_in_the_admin(atlas_url, client):
    admin = make_user("root", is_superuser=True, is_staff=True)
    client.force_login(admin)
    role = make_role("partners")
    form = {
        "name": "partners",
        "description": "",
        "read_key_patterns": "~*",
        "write_key_patterns": "~*",
        "rate_limit_capacity": "500",
        "rate_limit_rate_num": "50",
        "rate_limit_rate_den": "1",
    }
    response = client.post(f"/admin/accounts/role/{role.pk}/change/", form)
    assert response.status_code == 302, response.content.decode()[:2000]
    role.refresh_from_db()
    assert (role.rate_limit_capacity, role.rate_limit_rate_num, role.rate_limit_rate_den) == (500, 50, 1)
    assert "burst 500, 50/1 s" in client.get("/admin/accounts/role/").content.decode()

    refused = client.post(f"/admin/accounts/role/{role.pk}/change/", {**form, "rate_limit_rate_den": "0"})
    assert refused.status_code == 200  # the form again, with the error
    role.refresh_from_db()
    assert role.rate_limit_rate_den == 1


def test_unreachable_atlas_fails_open_by_default_logged_and_counted(atlas_url, monkeypatch, caplog):
    client = client_for(make_user("alice", "user"))
    limits(monkeypatch, capacity=1, HELIOS_ATLAS_URL=f"redis://127.0.0.1:{free_port()}/0")
    before = counter("rate_limiter_unavailable_total", mode="open")
    responses = [client.get(ME) for _ in range(3)]
    assert [response.status_code for response in responses] == [200, 200, 200]
    assert not any(header in responses[0] for header in RATE_HEADERS)
    assert counter("rate_limiter_unavailable_total", mode="open") == before + 3
    warnings = [record for record in caplog.records if getattr(record, "action", "") == "rate_limiter_unavailable"]
    assert len(warnings) == 1, "logged, but not once per request"


def test_unreachable_atlas_fails_closed_when_configured(atlas_url, monkeypatch):
    client = client_for(make_user("alice", "user"))
    limits(
        monkeypatch,
        capacity=1,
        HELIOS_ATLAS_URL=f"redis://127.0.0.1:{free_port()}/0",
        HELIOS_GATEWAY_RATE_LIMIT_FAIL_MODE="closed",
    )
    before = counter("rate_limiter_unavailable_total", mode="closed")
    refused = client.get(ME)
    assert refused.status_code == 503
    assert refused.json()["code"] == "rate_limiter_unavailable"
    assert refused["Retry-After"] == "1"
    assert counter("rate_limiter_unavailable_total", mode="closed") == before + 1


def test_rate_limiting_can_be_switched_off(atlas_url, monkeypatch):
    limits(monkeypatch, capacity=1, HELIOS_GATEWAY_RATE_LIMIT_ENABLED="false")
    client = client_for(make_user("alice", "user"))
    responses = [client.get(ME) for _ in range(3)]
    assert [response.status_code for response in responses] == [200, 200, 200]
    assert "RateLimit" not in responses[0]


def test_without_atlas_there_is_no_rate_limiting(db):
    reset_gateway_caches()
    client = client_for(make_user("alice", "user"))
    assert client.get(ME).status_code == 200
    assert "RateLimit" not in client.get(ME)


def test_role_rate_fields_refuse_zero():
    from django.core.exceptions import ValidationError

    role = Role(name="zero", rate_limit_capacity=0)
    with pytest.raises(ValidationError, match="rate_limit_capacity"):
        role.full_clean()
