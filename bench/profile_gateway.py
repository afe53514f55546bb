"""Where a GET /api/v1/kv/<key> spends its time: cProfile over REQUESTS requests through Django's
test client in this process (the gateway's views, middleware, JWT auth, database and ATLAS, without
gunicorn and uvicorn), grouped into the stages of the request. Run by bench_gateway.py, with the
environment (database, HELIOS_ATLAS_URL) of the benchmark; argument: the key to read."""

from __future__ import annotations

import cProfile
import os
import pstats
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "helios_site.settings")

import django

django.setup()

from django.test import Client  # noqa: E402
from rest_framework.renderers import JSONRenderer  # noqa: E402
from rest_framework_simplejwt.authentication import JWTAuthentication  # noqa: E402
from rest_framework_simplejwt.backends import TokenBackend  # noqa: E402
from rest_framework_simplejwt.tokens import RefreshToken  # noqa: E402

from accounts import permissions, ratelimit, selectors, services  # noqa: E402
from accounts.models import User  # noqa: E402
from atlas import selectors as kv_selectors  # noqa: E402

REQUESTS = int(os.environ.get("BENCH_PROFILE_REQUESTS", "2000"))

# (label, function): a stage's time is the cumulative time of its function.
STAGES: list[tuple[str, Callable[..., Any]]] = [
    ("JWT: signature and claims (PyJWT)", TokenBackend.decode),
    ("JWT: user row (SELECT user)", JWTAuthentication.get_user),
    ("JWT: revocation denylist (SELECT)", services.access_token_is_revoked),
    ("roles: permissions, key patterns, rate policy (SELECT)", selectors.user_role_grants),
    ("permission kv.read (answered from the roles)", permissions.has_permission),
    ("rate limiter: CL.THROTTLE round trip", ratelimit.RateLimiter.check),
    ("KV read: MULTI GET TTL EXEC round trip", kv_selectors.kv_get),
    ("key pattern match (Redis glob)", selectors.KeyAccess.can_read),
    ("response rendering (JSONRenderer)", JSONRenderer.render),
]


def code_key(function: Callable[..., Any]) -> tuple[str, int, str]:
    code = function.__code__
    return code.co_filename, code.co_firstlineno, code.co_name


def main() -> None:
    key = sys.argv[1]
    user = User.objects.get(username="bench")
    token = str(RefreshToken.for_user(user).access_token)
    client = Client(HTTP_AUTHORIZATION=f"Bearer {token}", HTTP_HOST="127.0.0.1")
    path = f"/api/v1/kv/{key}"
    for _ in range(200):  # warm up
        assert client.get(path).status_code == 200

    started = time.perf_counter()
    for _ in range(REQUESTS):
        client.get(path)
    plain = (time.perf_counter() - started) / REQUESTS

    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(REQUESTS):
        client.get(path)
    profiler.disable()
    stats = pstats.Stats(profiler)
    entries = stats.stats  # type: ignore[attr-defined]
    total = sum(tt for (_, _, _), (_, _, tt, _, _) in entries.items())

    print(f"{REQUESTS} requests, {plain * 1000:.2f} ms each without the profiler; share of profiled time:")
    for label, function in STAGES:
        cumulative = entries.get(code_key(function), (0, 0, 0, 0.0, None))[3]
        print(f"  {label:<56}{100 * cumulative / total:6.1f}%   {1e6 * cumulative / REQUESTS:7.0f} us/request")
    queries = sum(
        nc
        for (filename, _, name), (_, nc, _, _, _) in entries.items()
        if filename.endswith("django/db/backends/utils.py") and name == "_execute"
    )
    print(f"  SQL queries per request: {queries / REQUESTS:.1f}")
    print("\ntop functions by own time:")
    stats.sort_stats("tottime").print_stats(12)


if __name__ == "__main__":
    main()
