"""Writes of the accounts app: registration, tokens, logout, the first admin."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.contrib.auth import authenticate, password_validation
from django.db import IntegrityError, transaction
from django.utils import timezone
from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.settings import api_settings as jwt_settings
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken
from rest_framework_simplejwt.tokens import AccessToken, RefreshToken, Token

from accounts.models import RevokedAccessToken, Role, User
from accounts.permissions import DEFAULT_ROLE


class UsernameTaken(Exception):
    """Another user already has this username (compared case-insensitively)."""


class InvalidCredentials(Exception):
    """Unknown user, wrong password or inactive account: deliberately not told apart."""


class TokenMismatch(Exception):
    """The refresh token given at logout belongs to another user."""


@dataclass(frozen=True)
class TokenPair:
    access: str
    refresh: str
    user_id: int
    expires_in: int


def user_register(*, username: str, password: str) -> User:
    """Create a user with the default role. Raises django ValidationError for a weak password."""
    candidate = User(username=username)
    password_validation.validate_password(password, user=candidate)
    if User.objects.filter(username__iexact=username).exists():
        raise UsernameTaken(username)
    try:
        with transaction.atomic():
            user = User.objects.create_user(username=username, password=password)
            user.roles.add(Role.objects.get(name=DEFAULT_ROLE))
    except IntegrityError:
        raise UsernameTaken(username) from None
    return user


def _access_lifetime_seconds() -> int:
    return int(jwt_settings.ACCESS_TOKEN_LIFETIME.total_seconds())


def token_pair_for_login(*, username: str, password: str, request: Any = None) -> TokenPair:
    """Check the credentials and issue an access and a refresh token.

    django.contrib.auth.authenticate() runs the password hasher even for an unknown username, so the
    answer takes as long for a wrong user as for a wrong password.
    """
    user = authenticate(request, username=username, password=password)
    if user is None:
        raise InvalidCredentials()
    refresh = RefreshToken.for_user(user)
    User.objects.filter(pk=user.pk).update(last_login=timezone.now())
    return TokenPair(
        access=str(refresh.access_token),
        refresh=str(refresh),
        user_id=user.pk,
        expires_in=_access_lifetime_seconds(),
    )


def token_pair_refresh(*, refresh_token: str) -> TokenPair:
    """Rotate a refresh token: the old one is blacklisted and a new pair issued.

    Blacklisting is one INSERT on a unique column, so of two concurrent refreshes with the same
    token exactly one wins. Raises TokenError for a token that is invalid, expired, blacklisted,
    of the wrong type, or whose user is gone or inactive.
    """
    old = RefreshToken(refresh_token)  # type: ignore[arg-type]  # verifies signature, expiry, type, blacklist
    user = User.objects.filter(pk=old.get(jwt_settings.USER_ID_CLAIM), is_active=True).first()
    if user is None:
        raise TokenError("Token user is unknown or inactive")
    try:
        with transaction.atomic():
            outstanding, _ = OutstandingToken.objects.get_or_create(
                jti=old[jwt_settings.JTI_CLAIM],
                defaults={
                    "user": user,
                    "token": str(old),
                    "expires_at": datetime.fromtimestamp(int(old["exp"]), tz=UTC),
                },
            )
            BlacklistedToken.objects.create(token=outstanding)
    except IntegrityError:
        raise TokenError("Token is blacklisted") from None
    refresh = RefreshToken.for_user(user)
    return TokenPair(
        access=str(refresh.access_token),
        refresh=str(refresh),
        user_id=user.pk,
        expires_in=_access_lifetime_seconds(),
    )


def access_token_revoke(token: Token) -> None:
    """Deny this access token until it expires; forget tokens that have expired meanwhile."""
    now = timezone.now()
    expires_at = datetime.fromtimestamp(int(token["exp"]), tz=UTC)
    RevokedAccessToken.objects.filter(expires_at__lt=now).delete()
    if expires_at > now:
        RevokedAccessToken.objects.get_or_create(jti=str(token["jti"]), defaults={"expires_at": expires_at})


def user_logout(*, user: User, access_token: Token | None, refresh_token: str | None) -> None:
    """Blacklist the refresh token (when given) and revoke the access token of this request.

    Raises TokenError for a refresh token that is invalid, expired or already blacklisted, and
    TokenMismatch for one that belongs to another user.
    """
    with transaction.atomic():
        if refresh_token:
            refresh = RefreshToken(refresh_token)  # type: ignore[arg-type]
            if str(refresh.get(jwt_settings.USER_ID_CLAIM)) != str(user.pk):
                raise TokenMismatch()
            refresh.blacklist()
        if isinstance(access_token, AccessToken):
            access_token_revoke(access_token)


def access_token_is_revoked(jti: str) -> bool:
    return RevokedAccessToken.objects.filter(jti=jti).exists()


def admin_ensure(*, username: str = "admin", password: str | None = None) -> tuple[User, bool, str | None]:
    """Create a superuser with the admin role when no superuser exists.

    Returns (superuser, created, generated password). The password is generated only when none was
    given, and is returned so that it can be shown once.
    """
    existing = User.objects.filter(is_superuser=True).order_by("pk").first()
    if existing is not None:
        return existing, False, None
    generated = None
    if not password:
        password = generated = secrets.token_urlsafe(18)
    with transaction.atomic():
        user = User.objects.create_superuser(username=username, password=password)
        user.roles.add(Role.objects.get(name="admin"))
    return user, True, generated
