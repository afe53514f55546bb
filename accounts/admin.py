from django import forms
from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.models import Permission
from django.db.models import QuerySet
from django.http import HttpRequest

from accounts.models import Role, User
from accounts.permissions import APP_LABEL, HELIOS_CODENAMES


class PermissionChoiceField(forms.ModelMultipleChoiceField):
    """Shows HELIOS permissions by their codename (kv.write), the name the API documents."""

    def label_from_instance(self, obj: Permission) -> str:
        return f"{obj.codename}: {obj.name}"


@admin.register(Role)
class RoleAdmin(admin.ModelAdmin):
    list_display = ["name", "description", "read_key_patterns", "write_key_patterns", "rate_limit"]
    search_fields = ["name", "description"]
    filter_horizontal = ["permissions"]
    fieldsets = (
        (None, {"fields": ("name", "description", "permissions")}),
        ("KV keys", {"fields": ("read_key_patterns", "write_key_patterns")}),
        (
            "Rate limit (empty fields take the gateway.rate_limit.default_* settings)",
            {"fields": ("rate_limit_capacity", "rate_limit_rate_num", "rate_limit_rate_den")},
        ),
    )

    @admin.display(description="rate limit")
    def rate_limit(self, role: Role) -> str:
        """The override as `capacity, num/den s`, `default` where a field is empty."""
        if role.rate_limit_capacity is None and role.rate_limit_rate_num is None and role.rate_limit_rate_den is None:
            return "default"
        capacity = role.rate_limit_capacity or "default"
        rate = f"{role.rate_limit_rate_num or 'default'}/{role.rate_limit_rate_den or 'default'} s"
        return f"burst {capacity}, {rate}"

    def formfield_for_manytomany(self, db_field, request, **kwargs):  # type: ignore[no-untyped-def]
        if db_field.name != "permissions":
            return super().formfield_for_manytomany(db_field, request, **kwargs)
        kwargs["queryset"] = Permission.objects.filter(
            content_type__app_label=APP_LABEL, codename__in=HELIOS_CODENAMES
        ).order_by("codename")
        kwargs["form_class"] = PermissionChoiceField
        return super().formfield_for_manytomany(db_field, request, **kwargs)


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    list_display = ["username", "email", "is_active", "is_staff", "is_superuser", "role_names", "last_login"]
    list_filter = ["is_active", "is_staff", "is_superuser", "roles"]
    filter_horizontal = ["roles", "groups", "user_permissions"]
    fieldsets = (
        *(DjangoUserAdmin.fieldsets or ()),
        ("HELIOS", {"fields": ("roles",)}),
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet[User]:
        return super().get_queryset(request).prefetch_related("roles")

    @admin.display(description="roles")
    def role_names(self, user: User) -> str:
        return ", ".join(role.name for role in user.roles.all())
