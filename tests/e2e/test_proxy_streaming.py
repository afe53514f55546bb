"""Bodies stream through the proxy in constant memory, both ways; chunked encoding; WebSocket."""

import base64
import hashlib
import http.client
import json
import os
import socket
import threading
import time

import pytest

from tests.proxy.support import Backend, Proxy, rss_kib

pytestmark = pytest.mark.timeout(90)

LARGE = 1024**3  # the 1 GB, both ways
# The proxy holds at most a read buffer and a write buffer per side (256 KiB high-water marks):
# 40 MiB of growth would mean it buffered a large part of the body.
RSS_GROWTH_LIMIT_KIB = 40 * 1024


@pytest.fixture(scope="module")
def backend(tmp_path_factory):
    started = Backend("stream", tmp_path_factory.mktemp("stream"))
    yield started
    started.stop()


@pytest.fixture(scope="module")
def proxy(backend, tmp_path_factory):
    started = Proxy(tmp_path_factory.mktemp("stream-proxy"), {"backends": [backend.url], "access_log": True})
    yield started
    started.stop()


class RssSampler:
    """Samples a process's RSS in a thread while a transfer runs."""

    def __init__(self, pid):
        self.pid = pid
        self.baseline = rss_kib(pid)
        self.peak = self.baseline
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_kib(self.pid))
            time.sleep(0.02)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    @property
    def growth(self):
        return self.peak - self.baseline


def test_a_large_download_streams_in_constant_memory(proxy):
    proxy.get("/")  # warm up: pooled connection, buffers allocated
    pid = proxy.worker_pids()[0]
    conn = proxy.connection(timeout=30)
    with RssSampler(pid) as rss:
        conn.request("GET", f"/download?bytes={LARGE}")
        response = conn.getresponse()
        assert response.status == 200
        assert response.getheader("content-length") == str(LARGE)
        received = 0
        while piece := response.read(1 << 20):
            received += len(piece)
    conn.close()
    assert received == LARGE
    assert rss.growth < RSS_GROWTH_LIMIT_KIB, f"RSS grew by {rss.growth} KiB"


def test_a_large_upload_streams_in_constant_memory(proxy):
    pid = proxy.worker_pids()[0]
    block = os.urandom(1 << 20)
    with RssSampler(pid) as rss, socket.create_connection(("127.0.0.1", proxy.port), timeout=30) as sock:
        sock.sendall(f"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: {LARGE}\r\n\r\n".encode())
        for _ in range(LARGE // len(block)):
            sock.sendall(block)
        response = http.client.HTTPResponse(sock)
        response.begin()
        body = json.loads(response.read())
    assert body == {"bytes": LARGE}
    assert rss.growth < RSS_GROWTH_LIMIT_KIB, f"RSS grew by {rss.growth} KiB"


def test_a_slow_reader_holds_the_backend_back_instead_of_filling_memory(proxy):
    size = 200 * 1024 * 1024
    pid = proxy.worker_pids()[0]
    conn = proxy.connection(timeout=30)
    conn.connect()
    conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    with RssSampler(pid) as rss:
        conn.request("GET", f"/download?bytes={size}")
        response = conn.getresponse()
        received = len(response.read(1 << 20))
        time.sleep(1.5)  # the backend is fast; the proxy must stop reading from it
    assert rss.growth < RSS_GROWTH_LIMIT_KIB, f"RSS grew by {rss.growth} KiB while the client read nothing"
    while piece := response.read(1 << 20):
        received += len(piece)
    conn.close()
    assert received == size


def test_chunked_bodies_are_decoded_and_reframed(proxy):
    conn = proxy.connection(timeout=30)
    pieces = [os.urandom(100_000) for _ in range(50)]
    conn.request("POST", "/upload", body=iter(pieces), encode_chunked=True, headers={"Transfer-Encoding": "chunked"})
    assert json.loads(conn.getresponse().read()) == {"bytes": 5_000_000}

    conn.request("GET", "/download?bytes=3000000&chunked=1")
    response = conn.getresponse()
    assert response.getheader("transfer-encoding") == "chunked"
    assert len(response.read()) == 3_000_000

    # A body that ends when the backend closes reaches an HTTP/1.1 client chunked, on a live connection.
    conn.request("GET", "/download?bytes=1000000&close=1")
    response = conn.getresponse()
    assert response.getheader("transfer-encoding") == "chunked"
    assert len(response.read()) == 1_000_000
    conn.request("GET", "/")
    assert conn.getresponse().read() == b"stream"
    conn.close()


def ws_frame(payload: bytes, opcode: int = 1) -> bytes:
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    if len(payload) < 126:
        head = bytes([0x80 | opcode, 0x80 | len(payload)])
    else:
        head = bytes([0x80 | opcode, 0x80 | 126]) + len(payload).to_bytes(2, "big")
    return head + mask + masked


def read_exact(sock, count):
    data = b""
    while len(data) < count:
        piece = sock.recv(count - len(data))
        assert piece, "connection closed"
        data += piece
    return data


def ws_read(sock) -> tuple[int, bytes]:
    first, second = read_exact(sock, 2)
    length = second & 0x7F
    if length == 126:
        length = int.from_bytes(read_exact(sock, 2), "big")
    return first & 0x0F, read_exact(sock, length)


def test_a_websocket_echo_passes_through(proxy):
    key = base64.b64encode(os.urandom(16)).decode()
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
        sock.sendall(
            (
                "GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
            + ws_frame(b"sent with the handshake")
        )
        head = b""
        while b"\r\n\r\n" not in head:
            head += sock.recv(1)
        assert head.startswith(b"HTTP/1.1 101 ")
        expected = base64.b64encode(hashlib.sha1(key.encode() + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
        assert b"sec-websocket-accept: " + expected in head
        assert ws_read(sock) == (1, b"sent with the handshake")
        sock.sendall(ws_frame(b"hello"))
        assert ws_read(sock) == (1, b"hello")
        big = os.urandom(60_000)
        sock.sendall(ws_frame(big, opcode=2))
        assert ws_read(sock) == (2, big)
        sock.sendall(ws_frame(b"", opcode=8))
        assert ws_read(sock) == (8, b"")
