"""The authentication backend that grants users the permissions of their roles."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.backends import BaseBackend
from django.contrib.auth.models import Permission

_CACHE_ATTR = "_helios_role_perm_cache"


class RolePermissionBackend(BaseBackend):
    """Authenticates nobody; answers has_perm() from the user's roles (cached per user object)."""

    def get_all_permissions(self, user_obj: Any, obj: Any = None) -> set[str]:
        if not user_obj.is_active or user_obj.is_anonymous or obj is not None:
            return set()
        cached = getattr(user_obj, _CACHE_ATTR, None)
        if cached is None:
            rows = Permission.objects.filter(helios_roles__users=user_obj).values_list(
                "content_type__app_label", "codename"
            )
            cached = {f"{app_label}.{codename}" for app_label, codename in rows}
            setattr(user_obj, _CACHE_ATTR, cached)
        return set(cached)
