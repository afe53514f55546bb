"""OpenAPI description of HELIOS's authentication (imported by AccountsConfig.ready)."""

from typing import Any

from drf_spectacular.contrib.rest_framework_simplejwt import SimpleJWTScheme


class RevocableJWTScheme(SimpleJWTScheme):  # type: ignore[no-untyped-call]
    target_class = "accounts.authentication.RevocableJWTAuthentication"
    name = "jwtAuth"


# -- The rate limiter in the schema: every /api/v1/ operation may answer 429 (and 503 when the limiter
# fails closed), and every answer carries the rate limit headers.

_HEADER_DESCRIPTIONS = {
    "RateLimit-Policy": 'The bucket: `"<scope>";q=<size>;w=<seconds to refill from empty>` (scope `user` or `ip`).',
    "RateLimit": 'Where the caller stands: `"<scope>";r=<requests left>;t=<seconds until the bucket is full>`.',
    "X-RateLimit-Limit": "Bucket size.",
    "X-RateLimit-Remaining": "Requests left now.",
    "X-RateLimit-Reset": "Seconds until the bucket is full again.",
}
_ERROR = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
_RETRY_AFTER = {"schema": {"type": "integer"}, "description": "Seconds to wait before trying again."}


def rate_limit_responses(result: dict, generator: Any, request: Any, public: bool) -> dict:
    """drf-spectacular post-processing hook: add 429, 503 and the rate limit headers."""
    headers = {
        name: {"schema": {"type": "string"}, "description": description}
        for name, description in _HEADER_DESCRIPTIONS.items()
    }
    for path, operations in result.get("paths", {}).items():
        if not path.startswith("/api/v1/"):
            continue
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            responses.setdefault(
                "429",
                {
                    "description": "Rate limit reached (`throttled`); Retry-After says when to come back.",
                    "content": _ERROR,
                },
            )
            responses.setdefault(
                "503",
                {
                    "description": "The rate limiter cannot reach ATLAS and fails closed (`rate_limiter_unavailable`).",
                    "content": _ERROR,
                },
            )
            for code, response in responses.items():
                response.setdefault("headers", {}).update(headers)
                if code in {"429", "503"}:
                    response["headers"]["Retry-After"] = _RETRY_AFTER
    return result
