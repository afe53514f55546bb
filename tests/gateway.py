"""Helpers for the gateway's tests: ATLAS for in-process tests, tokens, cached settings."""

from __future__ import annotations

from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import RefreshToken

from accounts.conf import rate_limit_settings
from accounts.models import Role, User
from accounts.ratelimit import rate_limiter
from atlas.client import AtlasClient
from atlas.conf import kv_settings
from atlas.kv import kv_client

PASSWORD = "gateway-test-password-long"


def reset_gateway_caches() -> None:
    """Forget the settings and clients the gateway read once per process (the env changed)."""
    for cached in (rate_limit_settings, rate_limiter, kv_settings, kv_client):
        cached.cache_clear()
    AtlasClient.close_shared()


def make_role(name: str, *, permissions=("kv.read", "kv.write"), read="~*", write="~*", **overrides) -> Role:
    from django.contrib.auth.models import Permission

    role = Role.objects.create(name=name, read_key_patterns=read, write_key_patterns=write, **overrides)
    role.permissions.set(Permission.objects.filter(content_type__app_label="accounts", codename__in=permissions))
    return role


def make_user(username: str, *roles: str, **fields) -> User:
    user = User.objects.create_user(username=username, password=PASSWORD, **fields)
    user.roles.set(Role.objects.filter(name__in=roles))
    return user


def client_for(user: User | None = None, **defaults) -> APIClient:
    """An API client sending `user`'s access token (a real JWT, checked like any other)."""
    client = APIClient(**defaults)
    if user is not None:
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {RefreshToken.for_user(user).access_token}")
    return client
