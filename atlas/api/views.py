"""The KV REST API: /api/v1/kv/<key> (GET, POST, PUT, DELETE) and /api/v1/kv/ (list).

Each view checks the permission (kv.read or kv.write), the key, and the caller's role key patterns,
then calls one service or selector. ATLAS failures become 503 with Retry-After, never 500.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterator

import redis
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions, status
from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.utils.urls import replace_query_param
from rest_framework.views import APIView

from accounts.api.serializers import ErrorSerializer
from accounts.permissions import KV_READ, KV_WRITE, require
from accounts.selectors import KeyAccess, user_key_access
from accounts.throttles import RateLimitFirstMixin
from atlas import selectors, services
from atlas.api import serializers
from atlas.client import AtlasNotConfigured, AtlasUnavailable
from atlas.conf import kv_settings
from atlas.kv import KeyHoldsOtherType, ValueNotText
from helios_site.api import LimitedJSONParser
from helios_site.errors import ServiceUnavailable

logger = logging.getLogger(__name__)

READ = require(KV_READ)
WRITE = require(KV_WRITE)
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f]")


class KVError(exceptions.APIException):
    """An answer of the KV API other than DRF's own: status and code are given where it is raised."""

    def __init__(self, status_code: int, detail: str, code: str) -> None:
        super().__init__(detail, code)
        self.status_code = status_code


class StoreUnavailable(ServiceUnavailable):
    default_detail = "The key-value store is unavailable; retry later."
    default_code = "atlas_unavailable"


class KVJSONParser(LimitedJSONParser):
    """JSON bodies big enough for the largest value, even with every character escaped (\\uXXXX)."""

    def body_limit(self) -> int:
        return kv_settings().max_value_size * 6 + 64 * 1024


@contextlib.contextmanager
def store_errors(key: str | None = None) -> Iterator[None]:
    """ATLAS failures as API errors: 503 when it cannot answer, 409 for a value the API cannot show."""
    try:
        yield
    except (AtlasUnavailable, AtlasNotConfigured) as exc:
        logger.warning("KV call failed: %s", exc, extra={"action": "kv_atlas_unavailable"})
        raise StoreUnavailable() from exc
    except KeyHoldsOtherType:
        raise KVError(409, f"Key {key!r} holds a value that is not a string.", "wrong_type") from None
    except ValueNotText:
        raise KVError(409, f"Key {key!r} holds bytes that are not UTF-8 text.", "value_not_text") from None
    except redis.exceptions.RedisError as exc:  # an error reply we did not expect: still not a 500
        logger.error("KV call got an unexpected error: %s", exc, extra={"action": "kv_atlas_error"})
        raise StoreUnavailable() from exc


def checked_key(key: str) -> str:
    """The key from the URL, refused when too long (413) or not addressable (400)."""
    limit = kv_settings().max_key_length
    try:
        size = len(key.encode("utf-8"))
    except UnicodeEncodeError:  # a lone surrogate: no server here produces one, but never a 500
        raise KVError(400, "Keys must be valid UTF-8.", "invalid_key") from None
    if size > limit:
        raise KVError(413, f"Keys are at most {limit} bytes of UTF-8.", "key_too_long")
    if _CONTROL_CHARACTERS.search(key):
        raise KVError(400, "Keys may not contain control characters.", "invalid_key")
    if any(segment in {".", ".."} for segment in key.split("/")):
        raise KVError(
            400, "Keys may not have . or .. as a /-separated segment (clients rewrite such paths).", "invalid_key"
        )
    return key


def key_url(key: str) -> str:
    return reverse("kv-key", kwargs={"key": key})


def authorized_key(request: Request, key: str, *, write: bool) -> str:
    """The key from the URL once it is valid and the caller's roles let them read (write) it."""
    key = checked_key(key)
    _require_access(user_key_access(user=request.user), key, write=write)
    return key


def _require_access(access: KeyAccess, key: str, *, write: bool) -> None:
    if write and not access.can_write(key):
        rule = KeyAccess.describe(access.write_patterns)
        detail = f"Writing key {key!r} needs a role write key pattern that matches it; yours: {rule}."
        raise KVError(403, detail, "key_not_allowed")
    if not write and not access.can_read(key):
        rule = KeyAccess.describe(access.read_patterns)
        detail = f"Reading key {key!r} needs a role read key pattern that matches it; yours: {rule}."
        raise KVError(403, detail, "key_not_allowed")


def _error(description: str) -> OpenApiResponse:
    return OpenApiResponse(ErrorSerializer, description=description)


KEY_PARAMETER = OpenApiParameter(
    "key",
    OpenApiTypes.STR,
    OpenApiParameter.PATH,
    description=(
        "The key: the rest of the path, percent-encoded UTF-8 (encode everything but unreserved characters, "
        "e.g. urllib.parse.quote(key, safe='')); `/` may also be sent as is. At most gateway.kv.max_key_length "
        "bytes of UTF-8; no control characters; no `.` or `..` segment."
    ),
)
UNAUTHORIZED = _error("Missing, invalid, expired or revoked token.")
UNAVAILABLE = _error("ATLAS cannot be reached or did not answer in time (`atlas_unavailable`); see Retry-After.")
FORBIDDEN_READ = _error(
    "No kv.read permission (`permission_denied`), or no role read key pattern matches the key "
    "(`key_not_allowed`); `detail` names the rule."
)
FORBIDDEN_WRITE = _error(
    "No kv.write permission (`permission_denied`), or no role write key pattern matches the key "
    "(`key_not_allowed`); `detail` names the rule."
)
BAD_KEY = _error("The key has a control character or a `.`/`..` segment (`invalid_key`).")
KEY_TOO_LONG = _error(
    "The key is longer than gateway.kv.max_key_length (`key_too_long`), or the value larger "
    "than gateway.kv.max_value_size (`value_too_large`)."
)
WRITE_RESPONSES = {
    200: OpenApiResponse(serializers.KVEntrySerializer, description="Replaced an existing key."),
    201: OpenApiResponse(serializers.KVEntrySerializer, description="Created the key (Location names it)."),
    400: _error("Malformed JSON, a missing, unknown or mistyped field, a ttl out of range, or a bad key."),
    401: UNAUTHORIZED,
    403: FORBIDDEN_WRITE,
    413: KEY_TOO_LONG,
    503: UNAVAILABLE,
}
NOT_FOUND = _error("The key does not exist (`not_found`).")
CONFLICT = _error("The key holds a non-string value (`wrong_type`) or bytes that are not UTF-8 (`value_not_text`).")


class KVKeyView(RateLimitFirstMixin, APIView):
    """One key: read it, create or replace it, delete it."""

    parser_classes = [KVJSONParser]

    def get_permissions(self) -> list[BasePermission]:
        return [READ() if self.request.method in SAFE_METHODS else WRITE()]

    @extend_schema(
        operation_id="kv_get",
        parameters=[KEY_PARAMETER],
        responses={
            200: OpenApiResponse(serializers.KVEntrySerializer, description="The key, its value and its TTL."),
            400: BAD_KEY,
            401: UNAUTHORIZED,
            403: FORBIDDEN_READ,
            404: NOT_FOUND,
            409: CONFLICT,
            413: KEY_TOO_LONG,
            503: UNAVAILABLE,
        },
        tags=["kv"],
        summary="Read a key: its value and seconds to live (-1: no expiry)",
    )
    def get(self, request: Request, key: str) -> Response:
        key = authorized_key(request, key, write=False)
        with store_errors(key):
            entry = selectors.kv_get(key=key)
        if entry is None:
            raise exceptions.NotFound(f"Key {key!r} does not exist.")
        return Response(serializers.KVEntrySerializer(entry).data)

    @extend_schema(
        operation_id="kv_put",
        parameters=[KEY_PARAMETER],
        request=serializers.KVWriteSerializer,
        responses=WRITE_RESPONSES,
        examples=[OpenApiExample("with a TTL", value={"value": "hello", "ttl": 3600}, request_only=True)],
        tags=["kv"],
        summary="Create or replace a key (201 created, 200 replaced)",
    )
    def put(self, request: Request, key: str) -> Response:
        key = authorized_key(request, key, write=True)
        body = serializers.KVWriteSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        value: str = body.validated_data["value"]
        ttl: int | None = body.validated_data.get("ttl")
        limit = kv_settings().max_value_size
        if len(value.encode("utf-8")) > limit:
            raise KVError(413, f"Values are at most {limit} bytes of UTF-8.", "value_too_large")
        with store_errors(key):
            created = services.kv_set(key=key, value=value, ttl=ttl)
        data = serializers.KVEntrySerializer({"key": key, "value": value, "ttl": ttl or -1}).data
        if created:
            return Response(data, status=status.HTTP_201_CREATED, headers={"Location": key_url(key)})
        return Response(data)

    @extend_schema(
        operation_id="kv_post",
        parameters=[KEY_PARAMETER],
        request=serializers.KVWriteSerializer,
        responses=WRITE_RESPONSES,
        tags=["kv"],
        summary="Create or replace a key: the same as PUT",
    )
    def post(self, request: Request, key: str) -> Response:
        return self.put(request, key)

    @extend_schema(
        operation_id="kv_delete",
        parameters=[KEY_PARAMETER],
        responses={
            204: OpenApiResponse(description="Deleted."),
            400: BAD_KEY,
            401: UNAUTHORIZED,
            403: FORBIDDEN_WRITE,
            404: NOT_FOUND,
            413: KEY_TOO_LONG,
            503: UNAVAILABLE,
        },
        tags=["kv"],
        summary="Delete a key",
    )
    def delete(self, request: Request, key: str) -> Response:
        key = authorized_key(request, key, write=True)
        with store_errors(key):
            deleted = services.kv_delete(key=key)
        if not deleted:
            raise exceptions.NotFound(f"Key {key!r} does not exist.")
        return Response(status=status.HTTP_204_NO_CONTENT)


class KVListView(RateLimitFirstMixin, APIView):
    """Keys by prefix, a SCAN step per page, only those the caller may read."""

    permission_classes = [READ]

    @extend_schema(
        operation_id="kv_list",
        parameters=[
            OpenApiParameter("prefix", OpenApiTypes.STR, description="Only keys starting with this (literally)."),
            OpenApiParameter("cursor", OpenApiTypes.STR, description="0 (the default) to start, then `cursor`."),
            OpenApiParameter(
                "count",
                OpenApiTypes.INT,
                description="Keys to examine (SCAN COUNT): 100, at most "
                "gateway.kv.max_list_count. A page may hold fewer, even none, before the end.",
            ),
        ],
        responses={
            200: OpenApiResponse(serializers.KVPageSerializer, description="A page of keys and the next cursor."),
            400: _error("A cursor or count that is not a number in range."),
            401: UNAUTHORIZED,
            403: _error("No kv.read permission (`permission_denied`)."),
            503: UNAVAILABLE,
        },
        tags=["kv"],
        summary="List the keys you may read, a page at a time (follow `cursor` until it is null)",
    )
    def get(self, request: Request) -> Response:
        query = serializers.KVListQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        count = serializers.validate_list_count(query.validated_data["count"], kv_settings().max_list_count)
        cursor = serializers.validate_list_cursor(query.validated_data["cursor"])
        access = user_key_access(user=request.user)
        with store_errors():
            page = selectors.kv_list(
                prefix=query.validated_data["prefix"], cursor=cursor, count=count, readable=access.can_read
            )
        next_cursor = str(page.cursor) if page.cursor else None
        next_url = replace_query_param(request.build_absolute_uri(), "cursor", next_cursor) if next_cursor else None
        return Response(serializers.KVPageSerializer({"keys": page.keys, "cursor": next_cursor, "next": next_url}).data)
