"""Bodies of the KV API."""

from __future__ import annotations

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

# 100 years: far beyond any real use, well inside what SET ... EX accepts.
MAX_TTL_SECONDS = 100 * 365 * 86400


@extend_schema_field(OpenApiTypes.STR)
class TextField(serializers.Field[str, str, str, Any]):
    """Any Unicode string, NUL included (the store is binary-safe), but nothing that is not a string
    and no lone surrogates (which have no UTF-8 form)."""

    default_error_messages = {
        "invalid": "Must be a string.",
        "not_unicode": "Must be valid Unicode: lone surrogates have no UTF-8 form.",
    }

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        try:
            data.encode("utf-8")
        except UnicodeEncodeError:
            self.fail("not_unicode")
        return data

    def to_representation(self, value: Any) -> Any:
        return value


class StrictIntegerField(serializers.IntegerField):
    """A JSON integer: no strings, no floats, no booleans."""

    def to_internal_value(self, data: Any) -> int:
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return int(super().to_internal_value(data))


class KVWriteSerializer(serializers.Serializer[Any]):
    value = TextField(help_text="UTF-8 text, up to gateway.kv.max_value_size bytes (413 beyond).")
    ttl = StrictIntegerField(
        min_value=1,
        max_value=MAX_TTL_SECONDS,
        required=False,
        allow_null=True,
        help_text="Seconds until the key expires. Omitted or null: never (a TTL the key had is dropped).",
    )

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError({unknown[0]: ["Unknown field."]}, code="unknown_field")
        return super().to_internal_value(data)


class KVEntrySerializer(serializers.Serializer[Any]):
    key = serializers.CharField()
    value = serializers.CharField()
    ttl = serializers.IntegerField(help_text="Seconds until the key expires; -1 when it does not.")


class KVListQuerySerializer(serializers.Serializer[Any]):
    prefix = serializers.CharField(required=False, default="", allow_blank=True, trim_whitespace=False)
    cursor = serializers.RegexField(
        r"^[0-9]{1,20}$", required=False, default="0", help_text="0 to start; then the `cursor` of the last page."
    )
    count = serializers.IntegerField(required=False, default=100, min_value=1, help_text="Keys to examine; 100.")


class KVPageSerializer(serializers.Serializer[Any]):
    keys = serializers.ListField(child=serializers.CharField(), help_text="Keys you may read, in no order.")
    cursor = serializers.CharField(allow_null=True, help_text="Cursor of the next page; null at the end.")
    next = serializers.URLField(allow_null=True, help_text="URL of the next page; null at the end.")


def validate_list_count(value: int, limit: int) -> int:
    if value > limit:
        raise serializers.ValidationError({"count": [f"Ensure this value is less than or equal to {limit}."]})
    return value


def validate_list_cursor(text: str) -> int:
    cursor = int(text)
    if cursor >= 2**64:
        raise serializers.ValidationError({"cursor": ["Not a cursor."]})
    return cursor
