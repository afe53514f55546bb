"""Reads of the accounts app: what a user's roles let them do with KV keys and how fast.

One query per request answers both (the user's roles, cached on the user object), because the rate
limiter and the KV views each need it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from accounts.conf import RatePolicy
from accounts.models import Role
from atlas.store.glob import compile_glob

_GRANTS_ATTR = "_helios_role_grants"
ALL_KEYS_PATTERNS = ("*",)


@dataclass(frozen=True)
class RoleGrant:
    """What one role grants: permissions ("accounts.kv.read"), KV key globs (without their ~) and rate
    limit overrides."""

    name: str
    permissions: frozenset[str]
    read_patterns: tuple[str, ...]
    write_patterns: tuple[str, ...]
    rate_limit_capacity: int | None
    rate_limit_rate_num: int | None
    rate_limit_rate_den: int | None

    def rate_policy(self, default: RatePolicy) -> RatePolicy:
        return RatePolicy(
            capacity=self.rate_limit_capacity or default.capacity,
            rate_num=self.rate_limit_rate_num or default.rate_num,
            rate_den=self.rate_limit_rate_den or default.rate_den,
        )


def _globs(patterns: str) -> tuple[str, ...]:
    return tuple(pattern[1:] for pattern in patterns.split() if pattern.startswith("~") and len(pattern) > 1)


def user_role_grants(*, user: Any) -> tuple[RoleGrant, ...]:
    """The grants of the user's roles (none for an anonymous or inactive user), read in one query
    (roles joined with their permissions) once per user object."""
    if user is None or not user.is_authenticated or not user.is_active:
        return ()
    cached: tuple[RoleGrant, ...] | None = getattr(user, _GRANTS_ATTR, None)
    if cached is None:
        rows = Role.objects.filter(users=user).values_list(
            "name",
            "read_key_patterns",
            "write_key_patterns",
            "rate_limit_capacity",
            "rate_limit_rate_num",
            "rate_limit_rate_den",
            "permissions__content_type__app_label",
            "permissions__codename",
        )
        roles: dict[str, tuple[tuple[Any, ...], set[str]]] = {}
        for *role, app_label, codename in rows:
            _, permissions = roles.setdefault(str(role[0]), (tuple(role), set()))
            if codename is not None:
                permissions.add(f"{app_label}.{codename}")
        cached = tuple(
            RoleGrant(name, frozenset(permissions), _globs(read), _globs(write), capacity, rate_num, rate_den)
            for (name, read, write, capacity, rate_num, rate_den), permissions in roles.values()
        )
        setattr(user, _GRANTS_ATTR, cached)
    return cached


def user_has_permission(*, user: Any, permission: str) -> bool:
    """user.has_perm(permission), answered from the role grants when a role grants it (the query the
    request makes anyway), else by Django's backends (superuser, groups, user permissions)."""
    if user is None or not user.is_authenticated:
        return False
    if any(permission in grant.permissions for grant in user_role_grants(user=user)):
        return True
    return bool(user.has_perm(permission))


def user_rate_policy(*, user: Any, default: RatePolicy) -> RatePolicy:
    """The most generous policy among the user's roles (higher rate, then larger bucket); the default
    for a user without roles."""
    policies = [grant.rate_policy(default) for grant in user_role_grants(user=user)]
    return max(policies, key=RatePolicy.generosity, default=default)


@dataclass(frozen=True)
class KeyAccess:
    """The KV keys a user may read and write: Redis glob patterns, matched as Redis matches them."""

    read_patterns: tuple[str, ...]
    write_patterns: tuple[str, ...]

    def can_read(self, key: str) -> bool:
        return _matches_any(self.read_patterns, key)

    def can_write(self, key: str) -> bool:
        return _matches_any(self.write_patterns, key)

    @staticmethod
    def describe(patterns: tuple[str, ...]) -> str:
        """Patterns as the admin shows them (~glob ...), or `none`."""
        return " ".join(f"~{pattern}" for pattern in patterns) or "none"


def _matches_any(patterns: tuple[str, ...], key: str) -> bool:
    raw = key.encode("utf-8")
    return any(compile_glob(pattern.encode("utf-8"))(raw) for pattern in patterns)


def user_key_access(*, user: Any) -> KeyAccess:
    """The union of the user's roles' key patterns; a superuser may touch every key."""
    if user is not None and user.is_authenticated and user.is_superuser:
        return KeyAccess(ALL_KEYS_PATTERNS, ALL_KEYS_PATTERNS)
    grants = user_role_grants(user=user)
    read = tuple(dict.fromkeys(pattern for grant in grants for pattern in grant.read_patterns))
    write = tuple(dict.fromkeys(pattern for grant in grants for pattern in grant.write_patterns))
    return KeyAccess(read, write)
