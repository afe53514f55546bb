"""The KV REST API, in process, against a real runatlas (the session's `atlas_server`)."""

from __future__ import annotations

import json
import time
from urllib.parse import quote

import pytest
import redis
from rest_framework.test import APIClient

from tests.gateway import client_for, make_role, make_user, reset_gateway_caches
from tests.helpers import assert_error, free_port

pytestmark = pytest.mark.django_db

KV = "/api/v1/kv/"


def url(key: str) -> str:
    return KV + quote(key, safe="")


@pytest.fixture
def kv_db(atlas_url, atlas_server):
    """The ATLAS database of the KV API (gateway.kv.database, 1), for looking behind the API."""
    return redis.Redis(port=atlas_server, db=1, protocol=2)


@pytest.fixture
def alice(atlas_url):
    return client_for(make_user("alice", "user"))


# -- create, read, replace, delete


def test_put_creates_with_201_then_replaces_with_200(alice, kv_db):
    created = alice.put(url("greeting"), {"value": "hello", "ttl": 3600}, format="json")
    assert created.status_code == 201, created.content
    assert created.json() == {"key": "greeting", "value": "hello", "ttl": 3600}
    assert created["Location"] == "/api/v1/kv/greeting"
    assert kv_db.get("greeting") == b"hello"
    assert 3590 <= kv_db.ttl("greeting") <= 3600

    replaced = alice.put(url("greeting"), {"value": "hi"}, format="json")
    assert replaced.status_code == 200
    assert replaced.json() == {"key": "greeting", "value": "hi", "ttl": -1}
    assert "Location" not in replaced
    assert kv_db.ttl("greeting") == -1, "a replace without ttl drops the old TTL, as SET does"


def test_post_behaves_as_put(alice, kv_db):
    assert alice.post(url("k"), {"value": "one"}, format="json").status_code == 201
    assert alice.post(url("k"), {"value": "two", "ttl": 5}, format="json").status_code == 200
    assert kv_db.get("k") == b"two"


def test_get_returns_key_value_and_ttl(alice, kv_db):
    kv_db.set("with-ttl", "v1", ex=100)
    kv_db.set("without", "v2")
    with_ttl = alice.get(url("with-ttl"))
    assert with_ttl.status_code == 200
    body = with_ttl.json()
    assert body["key"] == "with-ttl"
    assert body["value"] == "v1"
    assert 98 <= body["ttl"] <= 100
    assert alice.get(url("without")).json() == {"key": "without", "value": "v2", "ttl": -1}


def test_missing_key_is_404_for_get_and_delete(alice):
    assert_error(alice.get(url("nothing")), 404, "not_found")
    assert_error(alice.delete(url("nothing")), 404, "not_found")


def test_delete_answers_204_then_404(alice, kv_db):
    kv_db.set("doomed", "x")
    response = alice.delete(url("doomed"))
    assert response.status_code == 204
    assert response.content == b""
    assert kv_db.exists("doomed") == 0
    assert_error(alice.delete(url("doomed")), 404, "not_found")


def test_expired_key_is_404(alice, kv_db):
    kv_db.set("short", "x", px=1)
    time.sleep(0.01)
    assert_error(alice.get(url("short")), 404, "not_found")


def test_the_kv_api_lives_in_its_own_database(alice, atlas_server):
    """Django's cache (and the rate limiter) use database 0; API users cannot reach them."""
    alice.put(url("mine"), {"value": "x"}, format="json")
    assert redis.Redis(port=atlas_server, db=0, protocol=2).exists("mine") == 0


def test_values_of_other_types_and_non_utf8_bytes_are_409(alice, kv_db):
    kv_db.hset("a-hash", "field", "value")
    kv_db.set("binary", b"\xff\xfe")
    assert_error(alice.get(url("a-hash")), 409, "wrong_type")
    assert_error(alice.get(url("binary")), 409, "value_not_text")
    # A write replaces a value of any type, as SET does.
    assert alice.put(url("a-hash"), {"value": "now a string"}, format="json").status_code == 200
    assert kv_db.type("a-hash") == b"string"


# -- keys in the path


@pytest.mark.parametrize(
    "key",
    [
        "a/b/c",
        "with space",
        "percent%20sign",
        "question?mark",
        "hash#tag",
        "ünïcødé-キー",
        "emoji 🙂",
        "a+b=c&d",
        "end/",
    ],
)
def test_any_path_safe_key_round_trips_percent_encoded(alice, kv_db, key):
    assert alice.put(url(key), {"value": key}, format="json").status_code == 201
    assert kv_db.get(key.encode()) == key.encode()
    body = alice.get(url(key)).json()
    assert body["key"] == key
    assert body["value"] == key
    assert key in alice.get(KV, {"prefix": key[:3]}).json()["keys"]


def test_slashes_may_be_sent_unencoded(alice, kv_db):
    assert alice.put("/api/v1/kv/dir/sub/leaf", {"value": "x"}, format="json").status_code == 201
    assert kv_db.get("dir/sub/leaf") == b"x"
    assert alice.get(url("dir/sub/leaf")).status_code == 200


@pytest.mark.parametrize("key", ["line\nbreak", "nul\x00byte", "tab\there", "del\x7f", "a/../b", "./a", "a/.."])
def test_unaddressable_keys_are_400(alice, key):
    assert_error(alice.put(url(key), {"value": "x"}, format="json"), 400, "invalid_key")
    assert_error(alice.get(url(key)), 400, "invalid_key")


def test_key_length_is_limited_in_utf8_bytes(alice, kv_db, monkeypatch):
    monkeypatch.setenv("HELIOS_GATEWAY_KV_MAX_KEY_LENGTH", "8")
    reset_gateway_caches()
    assert alice.put(url("12345678"), {"value": "x"}, format="json").status_code == 201
    assert alice.put(url("ééé"), {"value": "x"}, format="json").status_code == 201  # 6 bytes
    body = assert_error(alice.put(url("éééé1"), {"value": "x"}, format="json"), 413, "key_too_long")  # 9 bytes
    assert "8 bytes" in body["detail"]
    assert_error(alice.get(url("123456789")), 413, "key_too_long")
    assert kv_db.exists("éééé1") == 0


# -- values and bodies


def test_value_size_is_limited_in_utf8_bytes(alice, kv_db, monkeypatch):
    monkeypatch.setenv("HELIOS_GATEWAY_KV_MAX_VALUE_SIZE", "16")
    reset_gateway_caches()
    assert alice.put(url("fits"), {"value": "x" * 16}, format="json").status_code == 201
    assert alice.put(url("fits-utf8"), {"value": "é" * 8}, format="json").status_code == 201
    body = assert_error(alice.put(url("big"), {"value": "é" * 9}, format="json"), 413, "value_too_large")
    assert "16 bytes" in body["detail"]
    assert kv_db.exists("big") == 0
    # A body far beyond what any allowed value needs is refused before it is parsed.
    huge = json.dumps({"value": "y" * 200_000})
    assert_error(alice.put(url("huge"), huge, content_type="application/json"), 413, "request_too_large")


def test_values_keep_every_character(alice, kv_db):
    value = 'nul\x00 ctrl\x01 quote" backslash\\ emoji 🙂 newline\n'
    assert alice.put(url("exact"), {"value": value}, format="json").status_code == 201
    assert kv_db.get("exact") == value.encode()
    assert alice.get(url("exact")).json()["value"] == value
    assert alice.put(url("empty"), {"value": ""}, format="json").status_code == 201
    assert alice.get(url("empty")).json()["value"] == ""


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "value"),
        ({"value": 42}, "value"),
        ({"value": None}, "value"),
        ({"value": ["a"]}, "value"),
        ({"value": "x", "ttl": 0}, "ttl"),
        ({"value": "x", "ttl": -5}, "ttl"),
        ({"value": "x", "ttl": "60"}, "ttl"),
        ({"value": "x", "ttl": 1.5}, "ttl"),
        ({"value": "x", "ttl": True}, "ttl"),
        ({"value": "x", "ttl": 10**12}, "ttl"),
        ({"value": "x", "TTL": 60}, "TTL"),
    ],
)
def test_bad_bodies_are_400_naming_the_field(alice, kv_db, body, field):
    response = alice.put(url("k"), body, format="json")
    error = assert_error(response, 400, response.json()["code"])
    assert field in error["errors"], error
    assert kv_db.exists("k") == 0


@pytest.mark.parametrize(
    "raw",
    ['{"value": "x"', "[1, 2]", '"just a string"', '{"value": "\\ud800"}', "\xff"],
)
def test_malformed_json_non_objects_and_lone_surrogates_are_400(alice, kv_db, raw):
    response = alice.put(url("k"), raw.encode("utf-8", "surrogateescape"), content_type="application/json")
    assert response.status_code == 400, response.content
    assert kv_db.exists("k") == 0


# -- listing


def test_listing_pages_through_every_key_with_a_prefix(alice, kv_db):
    wanted = {f"list:{number:02d}" for number in range(25)}
    for key in wanted:
        kv_db.set(key, "x")
    kv_db.set("other:1", "x")
    seen: list[str] = []
    cursor, pages = "0", 0
    while True:
        response = alice.get(KV, {"prefix": "list:", "cursor": cursor, "count": 10})
        assert response.status_code == 200
        body = response.json()
        seen += body["keys"]
        pages += 1
        if body["cursor"] is None:
            assert body["next"] is None
            break
        assert f"cursor={body['cursor']}" in body["next"]
        cursor = body["cursor"]
        assert pages < 20
    assert set(seen) == wanted
    assert pages >= 3, "25 keys at count=10 take several pages"


def test_listing_takes_the_prefix_literally(alice, kv_db):
    for key in ("a*b", "a*c", "axb", "a?", "ab", "[x]", "x"):
        kv_db.set(key, "v")
    assert sorted(alice.get(KV, {"prefix": "a*"}).json()["keys"]) == ["a*b", "a*c"]
    assert alice.get(KV, {"prefix": "a?"}).json()["keys"] == ["a?"]
    assert alice.get(KV, {"prefix": "[x"}).json()["keys"] == ["[x]"]
    assert len(alice.get(KV).json()["keys"]) == 7


@pytest.mark.parametrize("query", [{"count": 0}, {"count": 1001}, {"count": "ten"}, {"cursor": "-1"}, {"cursor": "x"}])
def test_bad_listing_parameters_are_400(alice, query):
    assert alice.get(KV, query).status_code == 400


def test_listing_skips_keys_that_are_not_utf8(alice, kv_db):
    kv_db.set(b"bin\xff", "x")
    kv_db.set("text", "x")
    assert alice.get(KV).json()["keys"] == ["text"]


# -- who may do what


def test_unauthenticated_requests_are_401(atlas_url):
    anonymous = client_for()
    assert_error(anonymous.get(url("k")), 401, "not_authenticated")
    assert_error(anonymous.get(KV), 401, "not_authenticated")
    forged = client_for(HTTP_AUTHORIZATION="Bearer not-a-token")
    assert_error(forged.put(url("k"), {"value": "x"}, format="json"), 401, "token_not_valid")


def test_permissions_are_checked_and_named(atlas_url, kv_db):
    make_role("reader", permissions=("kv.read",))
    make_role("nothing", permissions=())
    reader = client_for(make_user("reader", "reader"))
    nobody = client_for(make_user("nobody", "nothing"))
    kv_db.set("k", "v")
    assert reader.get(url("k")).status_code == 200
    body = assert_error(reader.put(url("k"), {"value": "x"}, format="json"), 403, "permission_denied")
    assert "kv.write" in body["detail"]
    assert_error(reader.delete(url("k")), 403, "permission_denied")
    body = assert_error(nobody.get(url("k")), 403, "permission_denied")
    assert "kv.read" in body["detail"]
    assert_error(nobody.get(KV), 403, "permission_denied")
    assert kv_db.get("k") == b"v"


def test_role_key_patterns_limit_reads_and_writes_and_name_the_rule(atlas_url, kv_db):
    make_role("app", read="~app:* ~shared:*", write="~app:own:*")
    app = client_for(make_user("appuser", "app"))
    kv_db.set("app:x", "1")
    kv_db.set("secret", "2")
    assert app.get(url("app:x")).status_code == 200
    body = assert_error(app.get(url("secret")), 403, "key_not_allowed")
    assert "~app:* ~shared:*" in body["detail"]
    assert "secret" in body["detail"]
    # A key that does not exist is still 403, not 404: existence is not told to who may not read it.
    assert_error(app.get(url("secret-missing")), 403, "key_not_allowed")
    body = assert_error(app.put(url("app:x"), {"value": "y"}, format="json"), 403, "key_not_allowed")
    assert "~app:own:*" in body["detail"]
    assert_error(app.delete(url("app:x")), 403, "key_not_allowed")
    assert app.put(url("app:own:1"), {"value": "mine"}, format="json").status_code == 201
    assert kv_db.get("app:x") == b"1"


def test_patterns_use_redis_glob_semantics(atlas_url, kv_db):
    make_role("glob", read=r"~user:[ab]? ~lit\*", write="~*")
    client = client_for(make_user("globber", "glob"))
    for key in ("user:a1", "user:b2", "user:c1", "user:a12", "lit*", "litx"):
        kv_db.set(key, "v")
    allowed = {key: client.get(url(key)).status_code for key in ("user:a1", "user:b2", "user:c1", "user:a12")}
    assert allowed == {"user:a1": 200, "user:b2": 200, "user:c1": 403, "user:a12": 403}
    assert client.get(url("lit*")).status_code == 200
    assert client.get(url("litx")).status_code == 403


def test_listing_returns_only_readable_keys(atlas_url, kv_db):
    make_role("narrow", read="~pub:*")
    make_role("extra", read="~team:*", write="")
    both = client_for(make_user("both", "narrow", "extra"))
    narrow = client_for(make_user("narrow", "narrow"))
    for key in ("pub:1", "pub:2", "team:1", "priv:1"):
        kv_db.set(key, "x")
    assert sorted(narrow.get(KV, {"count": 100}).json()["keys"]) == ["pub:1", "pub:2"]
    assert sorted(both.get(KV, {"count": 100}).json()["keys"]) == ["pub:1", "pub:2", "team:1"]
    assert narrow.get(KV, {"prefix": "priv"}).json()["keys"] == []


def test_empty_patterns_allow_no_key_and_superusers_any(atlas_url, kv_db):
    make_role("blind", read="", write="")
    blind = client_for(make_user("blind", "blind"))
    root = client_for(make_user("root", is_superuser=True))
    kv_db.set("k", "v")
    body = assert_error(blind.get(url("k")), 403, "key_not_allowed")
    assert "none" in body["detail"]
    assert blind.get(KV).json()["keys"] == []
    assert root.get(url("k")).status_code == 200
    assert root.put(url("anything"), {"value": "x"}, format="json").status_code == 201


# -- ATLAS down


def test_unreachable_atlas_is_503_with_retry_after_never_500(atlas_url, monkeypatch):
    client = client_for(make_user("carol", "user"))
    monkeypatch.setenv("HELIOS_ATLAS_URL", f"redis://127.0.0.1:{free_port()}/0")
    monkeypatch.setenv("HELIOS_ATLAS_RETRY_BACKOFF", "0")
    reset_gateway_caches()
    for response in (
        client.get(url("k")),
        client.put(url("k"), {"value": "x"}, format="json"),
        client.delete(url("k")),
        client.get(KV),
    ):
        assert_error(response, 503, "atlas_unavailable")
        assert response["Retry-After"] == "1"


# -- the OpenAPI schema


@pytest.fixture
def schema():
    response = APIClient().get("/api/schema/?format=json")
    assert response.status_code == 200
    return response.json()


EXPECTED_RESPONSES = {
    ("/api/v1/kv/{key}", "get"): {"200", "400", "401", "403", "404", "409", "413", "429", "503"},
    ("/api/v1/kv/{key}", "put"): {"200", "201", "400", "401", "403", "413", "429", "503"},
    ("/api/v1/kv/{key}", "post"): {"200", "201", "400", "401", "403", "413", "429", "503"},
    ("/api/v1/kv/{key}", "delete"): {"204", "400", "401", "403", "404", "413", "429", "503"},
    ("/api/v1/kv/", "get"): {"200", "400", "401", "403", "429", "503"},
}


def test_the_schema_describes_every_kv_operation_with_its_bodies_and_errors(schema):
    paths = schema["paths"]
    components = schema["components"]["schemas"]
    for (path, method), codes in EXPECTED_RESPONSES.items():
        operation = paths[path][method]
        assert set(operation["responses"]) == codes, (path, method)
        for code, response in operation["responses"].items():
            if code.startswith(("4", "5")):
                assert response["content"]["application/json"]["schema"]["$ref"] == "#/components/schemas/Error"
            assert response["description"]
    for method in ("put", "post"):
        body = paths["/api/v1/kv/{key}"][method]["requestBody"]["content"]["application/json"]["schema"]
        assert body["$ref"] == "#/components/schemas/KVWriteRequest"
        assert (
            paths["/api/v1/kv/{key}"][method]["responses"]["201"]["content"]["application/json"]["schema"]["$ref"]
            == "#/components/schemas/KVEntry"
        )
    assert set(components["KVWriteRequest"]["properties"]) == {"value", "ttl"}
    assert components["KVWriteRequest"]["required"] == ["value"]
    assert components["KVWriteRequest"]["properties"]["ttl"]["minimum"] == 1
    assert set(components["KVEntry"]["properties"]) == {"key", "value", "ttl"}
    assert set(components["KVPage"]["properties"]) == {"keys", "cursor", "next"}
    assert {parameter["name"] for parameter in paths["/api/v1/kv/"]["get"]["parameters"]} == {
        "prefix",
        "cursor",
        "count",
    }
    key = next(p for p in paths["/api/v1/kv/{key}"]["get"]["parameters"] if p["name"] == "key")
    assert key["in"] == "path"
    assert "percent-encoded" in key["description"]


def test_every_api_operation_documents_the_rate_limit(schema):
    operations = [
        (path, method, operation)
        for path, methods in schema["paths"].items()
        if path.startswith("/api/v1/")
        for method, operation in methods.items()
    ]
    assert len(operations) >= 10
    for path, method, operation in operations:
        assert "429" in operation["responses"], (path, method)
        assert "Retry-After" in operation["responses"]["429"]["headers"]
        assert "Retry-After" in operation["responses"]["503"]["headers"]
        for response in operation["responses"].values():
            assert {"RateLimit-Policy", "RateLimit", "X-RateLimit-Remaining"} <= set(response["headers"]), (
                path,
                method,
            )


# -- cost


def test_reading_a_key_makes_three_queries(alice, kv_db, django_assert_num_queries):
    """The user, the revocation denylist, and the roles with their permissions (shared by the
    permission check, the key patterns and the rate limit policy)."""
    kv_db.set("k", "v")
    with django_assert_num_queries(3):
        assert alice.get(url("k")).status_code == 200


def test_a_permission_from_a_django_group_still_counts(atlas_url, kv_db):
    from django.contrib.auth.models import Group, Permission

    group = Group.objects.create(name="readers")
    group.permissions.add(Permission.objects.get(content_type__app_label="accounts", codename="kv.read"))
    make_role("patterns-only", permissions=(), read="~*")
    user = make_user("grouped", "patterns-only")
    user.groups.add(group)
    kv_db.set("k", "v")
    assert client_for(user).get(url("k")).status_code == 200
    assert_error(client_for(user).put(url("k"), {"value": "x"}, format="json"), 403, "permission_denied")
