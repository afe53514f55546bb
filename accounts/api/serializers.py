from __future__ import annotations

from django.contrib.auth.validators import UnicodeUsernameValidator
from rest_framework import serializers

from accounts.permissions import HELIOS_PERMISSIONS, qualified
from helios_site.api import StrictCharField

MAX_PASSWORD_LENGTH = 1024


class CredentialsSerializer(serializers.Serializer):
    username = StrictCharField(max_length=150)
    password = StrictCharField(max_length=MAX_PASSWORD_LENGTH, write_only=True, trim_whitespace=False)


class RegisterSerializer(CredentialsSerializer):
    username = StrictCharField(max_length=150, validators=[UnicodeUsernameValidator()])


class RegisteredUserSerializer(serializers.Serializer):
    user_id = serializers.IntegerField()
    username = serializers.CharField()


class LoginResponseSerializer(serializers.Serializer):
    token = serializers.CharField(help_text="Access token: send it as `Authorization: Bearer <token>`.")
    refresh = serializers.CharField(help_text="Refresh token, for /auth/refresh and /auth/logout.")
    user_id = serializers.IntegerField()
    expires_in = serializers.IntegerField(help_text="Seconds until the access token expires.")


class RefreshSerializer(serializers.Serializer):
    refresh = StrictCharField(max_length=4096)


class LogoutSerializer(serializers.Serializer):
    refresh = StrictCharField(max_length=4096, required=False)


class MeSerializer(serializers.Serializer):
    user_id = serializers.IntegerField(source="pk")
    username = serializers.CharField()
    is_staff = serializers.BooleanField()
    roles = serializers.SerializerMethodField()
    permissions = serializers.SerializerMethodField()

    def get_roles(self, user) -> list[str]:  # type: ignore[no-untyped-def]
        return sorted(role.name for role in user.roles.all())

    def get_permissions(self, user) -> list[str]:  # type: ignore[no-untyped-def]
        return [codename for codename, _ in HELIOS_PERMISSIONS if user.has_perm(qualified(codename))]


class ErrorSerializer(serializers.Serializer):
    detail = serializers.CharField()
    code = serializers.CharField()
