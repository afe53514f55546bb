import base64
import json
from datetime import timedelta

import jwt
import pytest
from django.conf import settings
from rest_framework_simplejwt.tokens import AccessToken, RefreshToken

from accounts.models import User
from accounts.throttles import LoginIPThrottle, LoginUsernameThrottle
from tests.accounts.conftest import PASSWORD
from tests.helpers import assert_error

pytestmark = pytest.mark.django_db

REGISTER = "/api/v1/auth/register"
LOGIN = "/api/v1/auth/login"
REFRESH = "/api/v1/auth/refresh"
LOGOUT = "/api/v1/auth/logout"
ME = "/api/v1/auth/me"


def bearer(api, token):
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return api


# -- register


def test_register_creates_a_user_with_the_default_role(api):
    response = api.post(REGISTER, {"username": "alice", "password": PASSWORD}, format="json")
    assert response.status_code == 201
    user = User.objects.get(username="alice")
    assert response.json() == {"user_id": user.pk, "username": "alice"}
    assert [role.name for role in user.roles.all()] == ["user"]


def test_register_refuses_a_taken_username_whatever_its_case(api, make_user):
    make_user(username="alice")
    response = api.post(REGISTER, {"username": "ALICE", "password": PASSWORD}, format="json")
    assert_error(response, 400, "unique")
    assert response.json()["detail"].startswith("username: ")


@pytest.mark.parametrize("password", ["short1", "qwertyuiop", "12345678901234", "alicewonderland!"])
def test_register_refuses_a_weak_password(api, password):
    response = api.post(REGISTER, {"username": "alicewonderland", "password": password}, format="json")
    assert_error(response, 400, "weak_password")
    assert not User.objects.filter(username="alicewonderland").exists()


@pytest.mark.parametrize(
    "body",
    [
        {"username": "alice"},
        {"password": PASSWORD},
        {"username": "", "password": PASSWORD},
        {"username": "a" * 151, "password": PASSWORD},
        {"username": "alice", "password": "p" * 5000},
        {"username": 12345, "password": PASSWORD},
        {"username": "alice", "password": ["not", "a", "string"]},
        {"username": "has space", "password": PASSWORD},
        {"username": None, "password": PASSWORD},
    ],
)
def test_register_refuses_missing_long_and_mistyped_fields(api, body):
    response = api.post(REGISTER, body, format="json")
    assert response.status_code == 400, response.content
    assert response.json()["errors"]


@pytest.mark.parametrize("payload", [b"{not json", b'["a", "list"]', b'"a string"', b"\xff\xfe", b""])
def test_register_refuses_malformed_json(api, payload):
    response = api.generic("POST", REGISTER, payload, content_type="application/json")
    assert response.status_code == 400, response.content
    assert set(response.json()) >= {"detail", "code"}


def test_an_oversized_body_is_refused_with_413(api):
    payload = json.dumps({"username": "alice", "password": "x" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 10)})
    response = api.generic("POST", REGISTER, payload, content_type="application/json")
    assert_error(response, 413, "request_too_large")


# -- login


def test_login_returns_the_documented_token_body(api, make_user):
    user = make_user()
    response = api.post(LOGIN, {"username": "alice", "password": PASSWORD}, format="json")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"token", "refresh", "user_id", "expires_in"}
    assert body["user_id"] == user.pk
    assert body["expires_in"] == 15 * 60
    assert AccessToken(body["token"])["user_id"] == str(user.pk)


def test_login_answers_the_same_for_an_unknown_user_and_a_wrong_password(api, make_user):
    make_user()
    wrong_password = api.post(LOGIN, {"username": "alice", "password": "not-the-password"}, format="json")
    unknown_user = api.post(LOGIN, {"username": "mallory", "password": PASSWORD}, format="json")
    assert wrong_password.status_code == unknown_user.status_code == 401
    assert (
        wrong_password.json()
        == unknown_user.json()
        == {
            "detail": "Invalid username or password.",
            "code": "invalid_credentials",
        }
    )


def test_an_inactive_user_cannot_log_in(api, make_user):
    make_user(is_active=False)
    response = api.post(LOGIN, {"username": "alice", "password": PASSWORD}, format="json")
    assert_error(response, 401, "invalid_credentials")


def test_login_is_throttled_per_username(api, make_user, monkeypatch):
    monkeypatch.setattr(LoginUsernameThrottle, "rate", "3/min", raising=False)
    make_user()
    for address in ("10.0.0.1", "10.0.0.2", "10.0.0.3"):
        response = api.post(LOGIN, {"username": "alice", "password": "guess"}, format="json", REMOTE_ADDR=address)
        assert response.status_code == 401
    response = api.post(LOGIN, {"username": "ALICE", "password": PASSWORD}, format="json", REMOTE_ADDR="10.0.0.4")
    assert_error(response, 429, "throttled")
    assert int(response["Retry-After"]) > 0
    other = api.post(LOGIN, {"username": "bob", "password": "guess"}, format="json", REMOTE_ADDR="10.0.0.4")
    assert other.status_code == 401


def login_attempt(api, username, remote, forwarded):
    """A wrong password for `username`, from `remote` claiming to forward for `forwarded`."""
    body = {"username": username, "password": "guess"}
    return api.post(LOGIN, body, format="json", REMOTE_ADDR=remote, HTTP_X_FORWARDED_FOR=forwarded)


def test_login_is_throttled_per_client_address_and_ignores_forged_forwarding(api, make_user, monkeypatch):
    monkeypatch.setattr(LoginIPThrottle, "rate", "3/min", raising=False)
    # 198.51.100.9 is not a trusted proxy (gateway.trusted_proxies is loopback): its X-Forwarded-For is ignored.
    for number in range(3):
        assert login_attempt(api, f"user{number}", "198.51.100.9", f"203.0.113.{number}").status_code == 401
    assert_error(login_attempt(api, "user9", "198.51.100.9", "1.2.3.4"), 429, "throttled")


def test_login_throttle_believes_forwarding_from_a_trusted_proxy(api, make_user, monkeypatch):
    monkeypatch.setattr(LoginIPThrottle, "rate", "2/min", raising=False)
    for number in range(2):
        assert login_attempt(api, f"user{number}", "127.0.0.1", "203.0.113.5").status_code == 401
    # The same proxy forwarding another client: that client has its own count.
    assert login_attempt(api, "user9", "127.0.0.1", "203.0.113.6").status_code == 401
    assert_error(login_attempt(api, "user9", "127.0.0.1", "203.0.113.5"), 429, "throttled")


# -- me and tokens


def test_me_describes_the_caller(api, make_user, login):
    user = make_user()
    response = bearer(api, login()["token"]).get(ME)
    assert response.status_code == 200
    assert response.json() == {
        "user_id": user.pk,
        "username": "alice",
        "is_staff": False,
        "roles": ["user"],
        "permissions": ["kv.read", "kv.write", "jobs.enqueue", "cluster.read"],
    }


def test_me_without_a_token_is_401(api):
    assert_error(api.get(ME), 401, "not_authenticated")


def forge(claims, key, algorithm="HS256"):
    return jwt.encode(claims, key, algorithm=algorithm)


def test_a_token_signed_with_another_key_is_refused(api, make_user, login):
    make_user()
    claims = jwt.decode(login()["token"], options={"verify_signature": False})
    forged = forge(claims, "not-the-server-key-but-long-enough-for-hs256-0123456789")
    assert_error(bearer(api, forged).get(ME), 401, "token_not_valid")


def test_an_alg_none_token_is_refused(api, make_user, login):
    make_user()
    claims = jwt.decode(login()["token"], options={"verify_signature": False})

    def b64(data):
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    unsigned = f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims)}."
    assert_error(bearer(api, unsigned).get(ME), 401, "token_not_valid")


def test_a_tampered_token_is_refused(api, make_user, login):
    victim = make_user(username="victim")
    make_user()
    header, payload, signature = login()["token"].split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["user_id"] = victim.pk
    tampered_payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    assert_error(bearer(api, f"{header}.{tampered_payload}.{signature}").get(ME), 401, "token_not_valid")


def test_an_expired_token_is_refused(api, make_user):
    user = make_user()
    token = AccessToken.for_user(user)
    token.set_exp(lifetime=-timedelta(seconds=1))
    assert_error(bearer(api, str(token)).get(ME), 401, "token_not_valid")


def test_a_refresh_token_is_not_an_access_token(api, make_user, login):
    make_user()
    assert_error(bearer(api, login()["refresh"]).get(ME), 401, "token_not_valid")


def test_an_access_token_is_not_a_refresh_token(api, make_user, login):
    make_user()
    response = api.post(REFRESH, {"refresh": login()["token"]}, format="json")
    assert_error(response, 401, "token_not_valid")


@pytest.mark.parametrize("garbage", ["", "abc", "a.b.c", "Bearer", "x" * 5000])
def test_garbage_tokens_are_refused(api, garbage):
    response = bearer(api, garbage).get(ME)
    assert response.status_code == 401


def test_a_token_of_a_deleted_user_is_refused(api, make_user, login):
    user = make_user()
    token = login()["token"]
    user.delete()
    assert bearer(api, token).get(ME).status_code == 401


# -- refresh and logout


def test_refresh_rotates_and_the_old_refresh_token_stops_working(api, make_user, login):
    make_user()
    first = login()
    rotated = api.post(REFRESH, {"refresh": first["refresh"]}, format="json")
    assert rotated.status_code == 200
    body = rotated.json()
    assert set(body) == {"token", "refresh", "user_id", "expires_in"}
    assert body["refresh"] != first["refresh"]
    assert bearer(api, body["token"]).get(ME).status_code == 200

    again = api.post(REFRESH, {"refresh": first["refresh"]}, format="json")
    assert_error(again, 401, "token_not_valid")
    assert api.post(REFRESH, {"refresh": body["refresh"]}, format="json").status_code == 200


def test_refresh_of_an_inactive_user_is_refused(api, make_user, login):
    user = make_user()
    refresh = login()["refresh"]
    User.objects.filter(pk=user.pk).update(is_active=False)
    assert_error(api.post(REFRESH, {"refresh": refresh}, format="json"), 401, "token_not_valid")


def test_logout_blacklists_the_refresh_token_and_revokes_the_access_token(api, make_user, login):
    make_user()
    tokens = login()
    response = bearer(api, tokens["token"]).post(LOGOUT, {"refresh": tokens["refresh"]}, format="json")
    assert response.status_code == 204

    assert_error(bearer(api, tokens["token"]).get(ME), 401, "token_revoked")
    api.credentials()
    assert_error(api.post(REFRESH, {"refresh": tokens["refresh"]}, format="json"), 401, "token_not_valid")


def test_logout_leaves_other_sessions_alone(api, make_user, login):
    make_user()
    phone, laptop = login(), login()
    bearer(api, phone["token"]).post(LOGOUT, {"refresh": phone["refresh"]}, format="json")
    assert bearer(api, laptop["token"]).get(ME).status_code == 200


def test_logout_with_another_users_refresh_token_is_refused(api, make_user, login):
    make_user()
    make_user(username="bob")
    alice = login()
    bob = login("bob")
    response = bearer(api, alice["token"]).post(LOGOUT, {"refresh": bob["refresh"]}, format="json")
    assert response.status_code == 400
    api.credentials()
    assert api.post(REFRESH, {"refresh": bob["refresh"]}, format="json").status_code == 200


def test_logout_with_a_garbage_refresh_token_is_refused(api, make_user, login):
    make_user()
    response = bearer(api, login()["token"]).post(LOGOUT, {"refresh": "garbage"}, format="json")
    assert_error(response, 401, "token_not_valid")


def test_revoked_tokens_are_forgotten_once_expired(make_user):
    from accounts.models import RevokedAccessToken
    from accounts.services import access_token_revoke

    user = make_user()
    expired = AccessToken.for_user(user)
    expired.set_exp(lifetime=-timedelta(seconds=5))
    RevokedAccessToken.objects.create(jti="old", expires_at=expired.current_time - timedelta(seconds=5))
    access_token_revoke(AccessToken.for_user(user))
    assert not RevokedAccessToken.objects.filter(jti="old").exists()
    assert RevokedAccessToken.objects.count() == 1


def test_token_lifetimes_follow_the_settings():
    assert settings.SIMPLE_JWT["ACCESS_TOKEN_LIFETIME"] == timedelta(minutes=15)
    assert settings.SIMPLE_JWT["REFRESH_TOKEN_LIFETIME"] == timedelta(days=7)
    assert RefreshToken.lifetime == timedelta(days=7)
