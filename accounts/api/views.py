"""The auth API: register, login, refresh, logout, me. Each view validates, calls a service, answers."""

from __future__ import annotations

from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.exceptions import AuthenticationFailed, ValidationError
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework_simplejwt.exceptions import InvalidToken, TokenError

from accounts import services
from accounts.api import serializers
from accounts.throttles import AtlasRateThrottle, LoginIPThrottle, LoginUsernameThrottle, RateLimitFirstMixin

ERROR = serializers.ErrorSerializer
BAD_REQUEST = OpenApiResponse(ERROR, description="Malformed body or invalid field; `errors` has the details.")
UNAUTHORIZED = OpenApiResponse(ERROR, description="Missing, invalid, expired or revoked token.")
THROTTLED = OpenApiResponse(ERROR, description="Too many attempts; see Retry-After.")


class PublicAPIView(RateLimitFirstMixin, APIView):
    """A view anyone may call: no authentication, but failures still answer 401 with a challenge."""

    permission_classes = [AllowAny]
    authentication_classes: list[type] = []

    def get_authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="api"'


def _token_body(pair: services.TokenPair) -> dict[str, object]:
    return {"token": pair.access, "refresh": pair.refresh, "user_id": pair.user_id, "expires_in": pair.expires_in}


class RegisterView(PublicAPIView):
    @extend_schema(
        request=serializers.RegisterSerializer,
        responses={201: serializers.RegisteredUserSerializer, 400: BAD_REQUEST},
        tags=["auth"],
        summary="Create a user with the default role",
    )
    def post(self, request: Request) -> Response:
        body = serializers.RegisterSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            user = services.user_register(**body.validated_data)
        except DjangoValidationError as exc:
            raise ValidationError({"password": exc.messages}, code="weak_password") from None
        except services.UsernameTaken:
            raise ValidationError({"username": ["A user with that username already exists."]}, code="unique") from None
        return Response({"user_id": user.pk, "username": user.username}, status=status.HTTP_201_CREATED)


class LoginView(PublicAPIView):
    throttle_classes = [AtlasRateThrottle, LoginIPThrottle, LoginUsernameThrottle]

    @extend_schema(
        request=serializers.CredentialsSerializer,
        responses={200: serializers.LoginResponseSerializer, 400: BAD_REQUEST, 401: UNAUTHORIZED, 429: THROTTLED},
        tags=["auth"],
        summary="Exchange a username and password for an access and a refresh token",
    )
    def post(self, request: Request) -> Response:
        body = serializers.CredentialsSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            pair = services.token_pair_for_login(**body.validated_data, request=request)
        except services.InvalidCredentials:
            raise AuthenticationFailed("Invalid username or password.", code="invalid_credentials") from None
        return Response(_token_body(pair))


class RefreshView(PublicAPIView):
    @extend_schema(
        request=serializers.RefreshSerializer,
        responses={200: serializers.LoginResponseSerializer, 400: BAD_REQUEST, 401: UNAUTHORIZED},
        tags=["auth"],
        summary="Rotate a refresh token: the old one stops working, a new pair is issued",
    )
    def post(self, request: Request) -> Response:
        body = serializers.RefreshSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            pair = services.token_pair_refresh(refresh_token=body.validated_data["refresh"])
        except TokenError as exc:
            raise InvalidToken({"detail": str(exc), "code": "token_not_valid"}) from None
        return Response(_token_body(pair))


class LogoutView(RateLimitFirstMixin, APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        request=serializers.LogoutSerializer,
        responses={204: None, 400: BAD_REQUEST, 401: UNAUTHORIZED},
        tags=["auth"],
        summary="Blacklist the refresh token and revoke the access token of this request",
    )
    def post(self, request: Request) -> Response:
        body = serializers.LogoutSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            services.user_logout(
                user=request.user,  # type: ignore[arg-type]
                access_token=request.auth,  # type: ignore[arg-type]
                refresh_token=body.validated_data.get("refresh"),
            )
        except TokenError as exc:
            raise InvalidToken({"detail": str(exc), "code": "token_not_valid"}) from None
        except services.TokenMismatch:
            raise ValidationError({"refresh": ["This refresh token belongs to another user."]}) from None
        return Response(status=status.HTTP_204_NO_CONTENT)


class MeView(RateLimitFirstMixin, APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(responses={200: serializers.MeSerializer, 401: UNAUTHORIZED}, tags=["auth"], summary="Who am I")
    def get(self, request: Request) -> Response:
        return Response(serializers.MeSerializer(request.user).data)
