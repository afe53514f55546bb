"""JWT authentication that also refuses access tokens revoked at logout."""

from __future__ import annotations

from rest_framework_simplejwt.authentication import JWTAuthentication
from rest_framework_simplejwt.exceptions import InvalidToken
from rest_framework_simplejwt.tokens import Token

from accounts.services import access_token_is_revoked


class RevocableJWTAuthentication(JWTAuthentication):
    """simplejwt's Bearer authentication (access tokens only, HS256 only) plus the logout denylist."""

    def get_validated_token(self, raw_token: bytes) -> Token:
        token = super().get_validated_token(raw_token)
        if access_token_is_revoked(str(token.get("jti", ""))):
            raise InvalidToken({"detail": "Token has been revoked.", "code": "token_revoked"})
        return token
