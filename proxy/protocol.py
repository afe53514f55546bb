"""HTTP/1.1 for the proxy, without IO: the heads it forwards, the errors it answers, chunk framing.

httptools parses; this module decides what goes on the wire. Header names are lower case here
(httptools gives them as sent; the protocol layer lowers them once).
"""

from __future__ import annotations

import http
import json
import os
import re

# RFC 9110 7.6.1: meaningful for one connection only, never forwarded (plus the names listed in
# Connection). Trailer too: trailers are not forwarded, so neither is their announcement.
HOP_BY_HOP = frozenset(
    {b"connection", b"proxy-connection", b"keep-alive", b"te", b"transfer-encoding", b"upgrade", b"trailer"}
)
# Set by the proxy itself, whatever the client sent (X-Forwarded-For is appended to).
REWRITTEN = frozenset({b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host", b"x-request-id"})
# RFC 9110 9.2.2: a retry of these cannot do more than the first attempt did.
IDEMPOTENT_METHODS = frozenset({b"GET", b"HEAD", b"OPTIONS", b"TRACE", b"PUT", b"DELETE"})

REQUEST_ID_PATTERN = re.compile(rb"^[A-Za-z0-9._:-]{1,128}$")

STATUS_LINES = {
    status.value: f"HTTP/1.1 {status.value} {status.phrase}\r\n".encode("latin-1") for status in http.HTTPStatus
}
CRLF = b"\r\n"
LAST_CHUNK = b"0\r\n\r\n"


def status_line(status: int, reason: bytes = b"") -> bytes:
    line = STATUS_LINES.get(status)
    if line is None:
        line = b"HTTP/1.1 %d %s\r\n" % (status, reason)
    return line


def chunk_head(size: int) -> bytes:
    return b"%x\r\n" % size


# Request headers an exchange looks at (the others pass through untouched).
_NOTED = frozenset(
    {b"host", b"connection", b"x-request-id", b"x-forwarded-for", b"transfer-encoding", b"content-length", b"upgrade"}
)


def note_request_headers(
    headers: list[tuple[bytes, bytes]],
) -> tuple[bytes | None, bytes | None, bytes | None, set[bytes], bool, int, bytes]:
    """(host, x-forwarded-for, x-request-id, names listed in Connection, chunked, content length,
    upgrade) of a request head that llhttp accepted (so Content-Length is one number)."""
    host = forwarded_for = request_id = None
    upgrade = b""
    drop: set[bytes] = set()
    chunked = False
    length = 0
    for name, value in headers:
        if name not in _NOTED:
            continue
        if name == b"host":
            host = value
        elif name == b"connection":
            drop |= connection_tokens(value)
        elif name == b"x-request-id":
            request_id = value
        elif name == b"x-forwarded-for":
            forwarded_for = value if forwarded_for is None else forwarded_for + b", " + value
        elif name == b"transfer-encoding":
            chunked = True
        elif name == b"content-length":
            length = int(value)
        else:
            upgrade = value
    return host, forwarded_for, request_id, drop, chunked, length, upgrade


def note_response_headers(headers: list[tuple[bytes, bytes]]) -> tuple[bool, bool, bytes]:
    """(has Content-Length, has Transfer-Encoding, Upgrade) of a response head."""
    has_length = has_chunked = False
    upgrade = b""
    for name, value in headers:
        if name == b"content-length":
            has_length = True
        elif name == b"transfer-encoding":
            has_chunked = True
        elif name == b"upgrade":
            upgrade = value
    return has_length, has_chunked, upgrade


def connection_tokens(value: bytes) -> set[bytes]:
    """The lower-case options of a Connection header: `keep-alive, Upgrade` -> {keep-alive, upgrade}."""
    return {token.strip().lower() for token in value.split(b",") if token.strip()}


class RequestIds:
    """Request ids: the client's when it is 1-128 characters of [A-Za-z0-9._:-], else a new one made
    of a random prefix per process and a counter, unique without a syscall per request."""

    def __init__(self) -> None:
        self._prefix = os.urandom(6).hex().encode() + b"-"
        self._counter = 0

    def pick(self, offered: bytes | None) -> bytes:
        if offered is not None and REQUEST_ID_PATTERN.match(offered):
            return offered
        self._counter += 1
        return self._prefix + b"%x" % self._counter


def request_head(
    method: bytes,
    target: bytes,
    headers: list[tuple[bytes, bytes]],
    *,
    drop: set[bytes] | frozenset[bytes],
    client_ip: bytes,
    forwarded_for: bytes | None,
    forwarded_host: bytes | None,
    request_id: bytes,
    framing: bytes,
) -> bytes:
    """The head sent to a backend: hop-by-hop headers (and those in `drop`) removed, X-Forwarded-*
    and X-Request-ID set, `framing` (a Transfer-Encoding/Connection block, or b"") appended."""
    parts = [method, b" ", target, b" HTTP/1.1\r\n"]
    for name, value in headers:
        if name in HOP_BY_HOP or name in REWRITTEN or name in drop:
            continue
        parts.append(name + b": " + value + CRLF)
    parts.append(b"x-forwarded-for: " + (forwarded_for + b", " + client_ip if forwarded_for else client_ip) + CRLF)
    parts.append(b"x-forwarded-proto: http\r\n")
    if forwarded_host is not None:
        parts.append(b"x-forwarded-host: " + forwarded_host + CRLF)
    parts.append(b"x-request-id: " + request_id + CRLF)
    parts.append(framing)
    parts.append(CRLF)
    return b"".join(parts)


def response_head(
    status: int,
    reason: bytes,
    headers: list[tuple[bytes, bytes]],
    *,
    request_id: bytes,
    framing: bytes,
) -> bytes:
    """The head sent to the client: hop-by-hop headers removed, X-Request-ID added when the backend
    did not echo one, `framing` (Transfer-Encoding / Connection lines, or b"") appended."""
    parts = [status_line(status, reason)]
    drop: set[bytes] | frozenset[bytes] = HOP_BY_HOP
    has_request_id = False
    for name, value in headers:
        if name == b"connection":
            drop = HOP_BY_HOP | connection_tokens(value)
    for name, value in headers:
        if name in drop:
            continue
        if name == b"x-request-id":
            has_request_id = True
        parts.append(name + b": " + value + CRLF)
    if not has_request_id:
        parts.append(b"x-request-id: " + request_id + CRLF)
    parts.append(framing)
    parts.append(CRLF)
    return b"".join(parts)


def error_response(status: int, code: str, detail: str, *, request_id: bytes | None, close: bool) -> bytes:
    """A complete response with a JSON body {"detail", "code"}, the shape of every HELIOS error."""
    body = json.dumps({"detail": detail, "code": code}).encode()
    parts = [
        status_line(status),
        b"content-type: application/json\r\n",
        b"content-length: %d\r\n" % len(body),
    ]
    if request_id is not None:
        parts.append(b"x-request-id: " + request_id + CRLF)
    if close:
        parts.append(b"connection: close\r\n")
    parts.append(CRLF)
    parts.append(body)
    return b"".join(parts)
