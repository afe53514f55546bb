"""OpenAPI description of HELIOS's authentication (imported by AccountsConfig.ready)."""

from drf_spectacular.contrib.rest_framework_simplejwt import SimpleJWTScheme


class RevocableJWTScheme(SimpleJWTScheme):  # type: ignore[no-untyped-call]
    target_class = "accounts.authentication.RevocableJWTAuthentication"
    name = "jwtAuth"
