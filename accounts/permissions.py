"""HELIOS's permissions, as Django permissions of the accounts app, and the DRF check for them.

Their codenames are the names the API documents (kv.read, jobs.manage, ...); Django sees them as
"accounts.kv.read" and so on. A user holds a permission through one of their roles, through
Django's own groups and user permissions, or by being a superuser.
"""

from __future__ import annotations

from typing import Any

from rest_framework.permissions import BasePermission
from rest_framework.request import Request

APP_LABEL = "accounts"

KV_READ = "kv.read"
KV_WRITE = "kv.write"
JOBS_ENQUEUE = "jobs.enqueue"
JOBS_READ_ALL = "jobs.read_all"
JOBS_MANAGE = "jobs.manage"
CLUSTER_READ = "cluster.read"
CLUSTER_MANAGE = "cluster.manage"
USERS_MANAGE = "users.manage"

HELIOS_PERMISSIONS: tuple[tuple[str, str], ...] = (
    (KV_READ, "Can read keys of the KV store"),
    (KV_WRITE, "Can write and delete keys of the KV store"),
    (JOBS_ENQUEUE, "Can enqueue jobs"),
    (JOBS_READ_ALL, "Can read every user's jobs"),
    (JOBS_MANAGE, "Can cancel and retry any job"),
    (CLUSTER_READ, "Can read the cluster status"),
    (CLUSTER_MANAGE, "Can add, remove and transfer cluster nodes"),
    (USERS_MANAGE, "Can manage users and roles"),
)
HELIOS_CODENAMES = frozenset(codename for codename, _ in HELIOS_PERMISSIONS)

# What the built-in roles grant. "admin" also gets is_staff-free access to everything the API offers.
BUILTIN_ROLE_PERMISSIONS: dict[str, tuple[str, ...]] = {
    "admin": tuple(codename for codename, _ in HELIOS_PERMISSIONS),
    "user": (KV_READ, KV_WRITE, JOBS_ENQUEUE, CLUSTER_READ),
}
DEFAULT_ROLE = "user"


def qualified(codename: str) -> str:
    """The string Django's has_perm() expects for one of HELIOS's codenames."""
    return f"{APP_LABEL}.{codename}"


def has_permission(user: Any, codename: str) -> bool:
    """Whether the user holds `codename`: through a role (one query, shared with the KV key patterns and
    the rate limit policy), or through Django's own means (superuser, groups, user permissions)."""
    from accounts.selectors import user_has_permission

    return user_has_permission(user=user, permission=qualified(codename))


def require(codename: str) -> type[BasePermission]:
    """A DRF permission class that lets in authenticated users holding `codename`."""
    if codename not in HELIOS_CODENAMES:
        raise ValueError(f"unknown HELIOS permission {codename!r}")

    class HasHeliosPermission(BasePermission):
        message = f"You need the {codename} permission."
        code = "permission_denied"

        def has_permission(self, request: Request, view: Any) -> bool:
            return has_permission(request.user, codename)

    HasHeliosPermission.__name__ = HasHeliosPermission.__qualname__ = f"Requires_{codename.replace('.', '_')}"
    return HasHeliosPermission
