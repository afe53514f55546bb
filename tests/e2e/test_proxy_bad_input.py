"""Bad input gets a 4xx and a closed connection, and other clients are unaffected."""

import json
import select
import socket
import threading
import time

import pytest

from tests.proxy.support import Backend, Proxy, raw_exchange

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def backend(tmp_path_factory):
    started = Backend("ok", tmp_path_factory.mktemp("bad"))
    yield started
    started.stop()


@pytest.fixture(scope="module")
def proxy(backend, tmp_path_factory):
    section = {
        "backends": [backend.url],
        "header_timeout": "1s",
        "max_header_size": "8k",
        "max_body_size": "1m",
    }
    started = Proxy(tmp_path_factory.mktemp("bad-proxy"), section)
    yield started
    started.stop()


def status_of(response: bytes) -> int:
    assert response.startswith(b"HTTP/1.1 "), response[:200]
    return int(response.split(b" ", 2)[1])


def body_of(response: bytes) -> dict:
    return json.loads(response.split(b"\r\n\r\n", 1)[1])


@pytest.mark.parametrize(
    ("request_bytes", "status", "code"),
    [
        (b"GARBAGE\r\n\r\n", 400, "bad_request"),
        (b"GET / HTTP/9.9\r\nHost: t\r\n\r\n", 400, "bad_request"),
        (b"GET /a b HTTP/1.1\r\nHost: t\r\n\r\n", 400, "bad_request"),
        (b"GET / HTTP/1.1\r\nHost t\r\n\r\n", 400, "bad_request"),
        (b"GET / HTTP/1.1\r\nHost: t\r\nX: a\x01b\r\n\r\n", 400, "bad_request"),
        (b"GET / HTTP/1.1\r\nHost: t\r\nX: a\r\n folded\r\n\r\n", 400, "bad_request"),
        (b"GET / HTTP/1.1\r\nHost: t\r\nX-Big: " + b"x" * 9000 + b"\r\n\r\n", 431, "headers_too_large"),
        (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: t\r\n\r\n", 414, "uri_too_long"),
        (b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 2000000\r\n\r\n", 413, "body_too_large"),
        (b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: abc\r\n\r\n", 400, "bad_request"),
        (b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", 400, "bad_request"),
        (b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com\r\n\r\n", 405, "method_not_allowed"),
        (
            b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
            400,
            "bad_request",
        ),
    ],
    ids=[
        "garbage-line",
        "bad-version",
        "space-in-target",
        "header-without-colon",
        "control-char-in-value",
        "obsolete-line-folding",
        "oversized-header",
        "oversized-target",
        "declared-body-too-large",
        "non-numeric-length",
        "two-lengths",
        "connect",
        "bad-chunk-size",
    ],
)
def test_bad_requests_get_a_4xx_and_a_closed_connection(proxy, request_bytes, status, code):
    response = raw_exchange(proxy.port, request_bytes)
    assert status_of(response) == status
    assert b"connection: close" in response
    assert body_of(response)["code"] == code


@pytest.mark.parametrize(
    "smuggled",
    [
        b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
        b"GET /admin/hits HTTP/1.1\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n"
        b"GET /admin/hits HTTP/1.1\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
    ],
    ids=["cl-then-te", "te-then-cl", "unknown-coding", "space-before-colon"],
)
def test_request_smuggling_is_refused_before_anything_reaches_a_backend(proxy, backend, smuggled):
    hits = backend.hits()
    response = raw_exchange(proxy.port, smuggled)
    assert status_of(response) == 400
    assert response.count(b"HTTP/1.1 ") == 1, "one answer, nothing smuggled behind it"
    assert backend.hits() == hits


def test_a_body_larger_than_the_limit_in_chunks_is_cut_with_413(proxy):
    chunk = b"x" * 100_000
    body = b"".join(b"%x\r\n%b\r\n" % (len(chunk), chunk) for _ in range(15)) + b"0\r\n\r\n"
    response = raw_exchange(
        proxy.port, b"POST /upload HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n" + body
    )
    assert status_of(response) == 413


def test_slowloris_gets_408_and_others_are_served_meanwhile(proxy):
    slow = []
    started = time.monotonic()

    def trickle():
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n")
            for _ in range(25):  # one header line every 0.2s, until the proxy answers
                if select.select([sock], [], [], 0.2)[0]:
                    break
                sock.sendall(b"X-Slow: 1\r\n")
            answered = time.monotonic() - started
            response = b""
            while piece := sock.recv(65536):
                response += piece
            slow.append((response, answered))

    threads = [threading.Thread(target=trickle) for _ in range(5)]
    for thread in threads:
        thread.start()
    time.sleep(0.3)
    quick = [proxy.get("/") for _ in range(5)]
    for thread in threads:
        thread.join()
    assert [status for status, _, _ in quick] == [200] * 5
    for response, elapsed in slow:
        assert status_of(response) == 408
        assert 0.9 < elapsed < 2.5, "answered after the 1s header timeout (swept every 0.25s)"


def test_an_idle_connection_that_sends_nothing_is_closed(proxy):
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
        started = time.monotonic()
        assert sock.recv(100) == b""
        assert time.monotonic() - started < 3
