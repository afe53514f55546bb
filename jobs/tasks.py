"""Built-in tasks: echo, sleep, and http (webhooks)."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from jobs import conf
from jobs.exceptions import PermanentFailure
from jobs.registry import task

MAX_SLEEP_SECONDS = 3600.0
MAX_HTTP_TIMEOUT_SECONDS = 60.0
MAX_URL_LENGTH = 2048
HTTP_BODY_KEPT = 4096


@task(name="echo")
def echo(**payload: Any) -> dict[str, Any]:
    """Return the payload: a no-op that proves the path from enqueue to result."""
    return payload


def _validate_sleep(payload: Mapping[str, Any]) -> None:
    seconds = payload.get("seconds")
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not 0 <= seconds <= MAX_SLEEP_SECONDS:
        raise ValueError(f"seconds must be a number from 0 to {MAX_SLEEP_SECONDS:g}")


@task(name="sleep", validator=_validate_sleep)
async def sleep(*, seconds: float) -> dict[str, float]:
    """Wait `seconds` without holding a thread busy in C: a timeout or shutdown can interrupt it."""
    await asyncio.sleep(seconds)
    return {"slept": seconds}


def _validate_http(payload: Mapping[str, Any]) -> None:
    url = payload.get("url")
    if not isinstance(url, str) or len(url) > MAX_URL_LENGTH:
        raise ValueError(f"url must be a string of at most {MAX_URL_LENGTH} characters")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("url must be an absolute http:// or https:// URL")
    method = payload.get("method", "GET")
    if method not in ("GET", "POST"):
        raise ValueError("method must be GET or POST")
    timeout = payload.get("timeout", 10.0)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 < timeout <= MAX_HTTP_TIMEOUT_SECONDS:
        raise ValueError(f"timeout must be a number of seconds above 0 and at most {MAX_HTTP_TIMEOUT_SECONDS:g}")
    headers = payload.get("headers", {})
    if not isinstance(headers, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in headers.items()):
        raise ValueError("headers must be an object of strings")


def _refuse_private_address(host: str, port: int) -> None:
    """Users enqueue http jobs: keep them off loopback, private and link-local addresses (cloud
    metadata, this machine's own services) unless worker.http_allow_private says otherwise."""
    if conf.http_allow_private():
        return
    try:
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except socket.gaierror as exc:
        raise ConnectionError(f"cannot resolve {host}: {exc}") from None
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if not address.is_global:
            raise PermanentFailure(f"refused: {host} resolves to {address}, which is not a public address")


@task(name="http", validator=_validate_http)
def http(
    *,
    url: str,
    method: str = "GET",
    body: Any = None,
    headers: dict[str, str] | None = None,
    timeout: float = 10.0,
) -> dict[str, Any]:
    """GET or POST (JSON `body`) a URL: a webhook. 5xx, 429 and network errors are retried; other
    4xx are final (PermanentFailure). Redirects are not followed. Returns the status and the body's
    first 4 KiB."""
    import requests  # here, not at the top: the gateway imports this module and never calls it

    parts = urlsplit(url)
    _refuse_private_address(parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80))
    response = requests.request(
        method, url, json=body if method == "POST" else None, headers=headers, timeout=timeout, allow_redirects=False
    )
    if response.status_code >= 500 or response.status_code == 429:
        raise ConnectionError(f"{method} {url} answered {response.status_code}")
    if response.status_code >= 400:
        raise PermanentFailure(f"{method} {url} answered {response.status_code}")
    return {"status": response.status_code, "body": response.text[:HTTP_BODY_KEPT]}
