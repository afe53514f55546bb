"""The Raft transport over real loopback sockets: authentication, frames, limits, queues, requests, TLS."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import struct
import subprocess
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import msgpack
import pytest

from raft.core import Message, MessageType, encode_message
from raft.transport import (
    F_AUTH,
    F_MESSAGE,
    HEADER,
    OutcomeUnknown,
    PeerUnavailable,
    RemoteError,
    Transport,
    TransportConfig,
    _mac,
    frame,
    tls_contexts,
)
from tests.raft.support import run

SECRET = b"0123456789abcdef-cluster"


class Node:
    """A transport plus what it received."""

    def __init__(
        self, node_id: int, secret: bytes = SECRET, listen: tuple[str, int] = ("127.0.0.1", 0), **config: Any
    ) -> None:
        self.received: list[Message] = []
        self.arrived = asyncio.Event()
        self.handler: Callable[[int, str, bytes], Awaitable[bytes]] | None = None
        self.transport = Transport(
            TransportConfig(node_id=node_id, listen=listen, secret=secret, **config),
            on_message=self._on_message,
            on_request=self._on_request,
        )

    def _on_message(self, message: Message) -> None:
        self.received.append(message)
        self.arrived.set()

    async def _on_request(self, peer: int, method: str, body: bytes) -> bytes:
        if method == "echo":
            return body
        if method == "slow":
            await asyncio.sleep(10)
            return b""
        raise RemoteError("nope", f"no method {method}", 42)

    async def wait_for(self, count: int, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.received) < count:
            assert time.monotonic() < deadline, f"got {len(self.received)} of {count} messages"
            await asyncio.sleep(0.01)


def heartbeat(src: int, dst: int, term: int = 1) -> Message:
    return Message(MessageType.HEARTBEAT, src, dst, term=term)


async def pair(**config: Any) -> tuple[Node, Node]:
    a, b = Node(1, **config), Node(2, **config)
    await a.transport.start()
    await b.transport.start()
    a.transport.set_peers({2: b.transport.address})
    b.transport.set_peers({1: a.transport.address})
    return a, b


async def close(*nodes: Node) -> None:
    for node in nodes:
        await node.transport.close()


def test_messages_and_requests_flow_between_authenticated_peers() -> None:
    async def scenario() -> None:
        a, b = await pair()
        try:
            for term in range(1, 51):
                assert a.transport.send(heartbeat(1, 2, term))
            await b.wait_for(50)
            assert [m.term for m in b.received] == list(range(1, 51))  # in order
            assert await a.transport.call(2, "echo", b"hello", timeout=5) == b"hello"
            with pytest.raises(RemoteError) as refused:
                await a.transport.call(2, "missing", b"", timeout=5)
            assert (refused.value.code, refused.value.detail) == ("nope", 42)
            with pytest.raises(OutcomeUnknown):
                await a.transport.call(2, "slow", b"", timeout=0.3)
            assert a.transport.peers()[2].connected
            assert b.transport.last_contact(1) is not None
        finally:
            await close(a, b)

    run(scenario())


def test_a_peer_with_the_wrong_secret_is_refused_and_delivers_nothing() -> None:
    async def scenario() -> None:
        good = Node(2)
        stranger = Node(1, secret=b"not-the-secret-at-all")
        await good.transport.start()
        await stranger.transport.start()
        stranger.transport.set_peers({2: good.transport.address})
        try:
            for _ in range(20):
                stranger.transport.send(heartbeat(1, 2))
                await asyncio.sleep(0.05)
            assert good.received == []
            assert good.transport.auth_failures >= 1
            assert not stranger.transport.peers()[2].connected
            assert "refused" in stranger.transport.peers()[2].last_error
        finally:
            await close(good, stranger)

    run(scenario())


def _read_frame(sock: socket.socket) -> tuple[int, bytes]:
    header = b""
    while len(header) < HEADER.size:
        chunk = sock.recv(HEADER.size - len(header))
        if not chunk:
            raise ConnectionError("closed")
        header += chunk
    length, kind = HEADER.unpack(header)
    body = b""
    while len(body) < length:
        chunk = sock.recv(length - len(body))
        if not chunk:
            raise ConnectionError("closed")
        body += chunk
    return kind, body


def _closed(sock: socket.socket) -> bool:
    """True once the other side closed the connection (within 3 s); closes ours too."""
    sock.settimeout(3)
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        pass
    except TimeoutError:
        return False
    finally:
        sock.close()
    return True


def _raw_connect(address: tuple[str, int]) -> tuple[socket.socket, list[Any]]:
    sock = socket.create_connection(address, timeout=3)
    _, body = _read_frame(sock)
    return sock, msgpack.unpackb(body, raw=False)


def test_strangers_cannot_inject_replay_or_flood_before_authenticating() -> None:
    async def scenario() -> None:
        node = Node(2)
        await node.transport.start()
        address = node.transport.address
        loop = asyncio.get_running_loop()

        def attacks() -> None:
            # 1. A message frame without authenticating: closed, never delivered.
            sock, _ = _raw_connect(address)
            sock.sendall(frame(F_MESSAGE, encode_message(heartbeat(1, 2))))
            assert _closed(sock)
            # 2. A valid AUTH for one connection, replayed on another (fresh nonce): refused.
            sock, hello = _raw_connect(address)
            nonce = os.urandom(32)
            mac = _mac(SECRET, b"client", hello[1], nonce, (1, 2), "")
            auth = frame(F_AUTH, msgpack.packb([1, 1, nonce, mac, "", ["127.0.0.1", 1]], use_bin_type=True))
            sock.sendall(auth)
            kind, _ = _read_frame(sock)
            assert kind == 3  # WELCOME: the genuine handshake works
            sock.close()
            replay, _ = _raw_connect(address)
            replay.sendall(auth + frame(F_MESSAGE, encode_message(heartbeat(1, 2))))
            kind, body = _read_frame(replay)
            assert kind == 4  # REJECT
            assert "authentication failed" in msgpack.unpackb(body, raw=False)[0]
            assert _closed(replay)
            # 3. A huge frame before authenticating: closed at the header, nothing buffered.
            sock, _ = _raw_connect(address)
            sock.sendall(struct.pack(">IB", 50 * 1024 * 1024, F_AUTH))
            assert _closed(sock)
            # 4. Garbage instead of msgpack: closed.
            sock, _ = _raw_connect(address)
            sock.sendall(frame(F_AUTH, b"\xc1\xc1\xc1"))
            assert _closed(sock)

        try:
            await loop.run_in_executor(None, attacks)
            assert node.received == []
            assert node.transport.auth_failures == 1
        finally:
            await close(node)

    run(scenario())


def test_oversized_frames_and_spoofed_senders_close_the_connection() -> None:
    async def scenario() -> None:
        a, b = await pair(max_frame_bytes=64 * 1024)
        try:
            assert await a.transport.call(2, "echo", b"x", timeout=5) == b"x"
            with pytest.raises(OutcomeUnknown):
                await a.transport.call(2, "echo", b"x" * 100_000, timeout=5)
            a.transport.send(heartbeat(3, 2))  # claims to come from node 3 on node 1's connection
            a.transport.send(heartbeat(1, 2, term=7))
            await asyncio.sleep(0.5)
            assert all(m.src == 1 for m in b.received)
            assert 7 not in [m.term for m in b.received]  # the spoofed frame closed the connection first
            # The link comes back by itself.
            deadline = time.monotonic() + 5
            while not b.received:
                assert time.monotonic() < deadline
                a.transport.send(heartbeat(1, 2, term=9))
                await asyncio.sleep(0.1)
        finally:
            await close(a, b)

    run(scenario())


def test_a_down_peer_costs_bounded_memory_and_never_blocks_the_sender() -> None:
    async def scenario() -> None:
        node = Node(1, queue_frames=100)
        await node.transport.start()
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            dead = sock.getsockname()
        node.transport.set_peers({2: dead})  # nothing listens there
        try:
            started = time.monotonic()
            accepted = sum(node.transport.send(heartbeat(1, 2, term=t)) for t in range(10_000))
            assert time.monotonic() - started < 2.0
            assert accepted <= 100
            stats = node.transport.peers()[2]
            assert stats.dropped >= 9_900
            assert not stats.connected
            with pytest.raises(PeerUnavailable):
                await node.transport.call(2, "echo", b"", timeout=0.3)
            assert node.transport.send(heartbeat(1, 9)) is False  # not a peer at all
        finally:
            await close(node)

    run(scenario())


def test_a_restarted_peer_is_reconnected() -> None:
    async def scenario() -> None:
        a, b = await pair(backoff_max=0.2)
        try:
            a.transport.send(heartbeat(1, 2))
            await b.wait_for(1)
            address = b.transport.address
            await b.transport.close()
            b2 = Node(2, listen=address)  # the same node back on the same port
            await b2.transport.start()
            deadline = time.monotonic() + 5
            while not b2.received:
                assert time.monotonic() < deadline, a.transport.peers()
                a.transport.send(heartbeat(1, 2, term=3))
                await asyncio.sleep(0.05)
            assert a.transport.peers()[2].reconnects >= 2
            await close(b2)
        finally:
            await close(a)

    run(scenario())


def test_cluster_ids_must_match_when_both_sides_know_one() -> None:
    async def scenario() -> None:
        a, b = await pair()
        a.transport.cluster_id = "cluster-a"
        b.transport.cluster_id = "cluster-b"
        try:
            with pytest.raises(PeerUnavailable, match="cluster id mismatch"):
                await a.transport.call(2, "echo", b"", timeout=1.0)
        finally:
            await close(a, b)

    run(scenario())


@pytest.fixture
def certificates(tmp_path: Path) -> dict[str, str]:
    assert shutil.which("openssl"), "openssl is needed to make test certificates"

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=tmp_path)

    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=helios-test-ca")  # fmt: skip
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", "node.key", "-out", "node.csr", "-subj", "/CN=node")  # fmt: skip
    openssl("x509", "-req", "-in", "node.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "node.pem", "-days", "2")  # fmt: skip
    return {"cert": str(tmp_path / "node.pem"), "key": str(tmp_path / "node.key"), "ca": str(tmp_path / "ca.pem")}


def test_tls_carries_the_same_exchange_and_refuses_plaintext(certificates: dict[str, str]) -> None:
    server_ssl, client_ssl = tls_contexts(certificates["cert"], certificates["key"], certificates["ca"])

    async def scenario() -> None:
        a, b = await pair(server_ssl=server_ssl, client_ssl=client_ssl)
        plain = Node(3)
        await plain.transport.start()
        plain.transport.set_peers({2: b.transport.address})
        try:
            a.transport.send(heartbeat(1, 2))
            await b.wait_for(1)
            assert await a.transport.call(2, "echo", b"over tls", timeout=5) == b"over tls"
            with pytest.raises(PeerUnavailable):
                await plain.transport.call(2, "echo", b"", timeout=1.0)
        finally:
            await close(a, b, plain)

    run(scenario())
