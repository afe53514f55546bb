"""atlas.client.AtlasClient: bounded calls, retries after a lost connection or a leader change, and
moving on to the next node. A real runatlas, and a small fake node that answers what a node in the
middle of an election would."""

from __future__ import annotations

import socketserver
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import hiredis
import pytest
import redis
from prometheus_client import REGISTRY

from atlas.client import AtlasClient, AtlasUnavailable, ClientOptions, is_leader_change
from tests.helpers import free_port

HELLO_REPLY = b"%1\r\n$5\r\nproto\r\n:3\r\n"
CLOSE = b"close the connection"


class FakeNode(socketserver.ThreadingTCPServer):
    """Speaks just enough RESP for redis-py: HELLO and CLIENT succeed; every other command gets
    `reply`, no answer at all (None), or its connection closed (CLOSE)."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, reply: bytes | None) -> None:
        self.reply = reply
        self.commands: list[list[bytes]] = []
        super().__init__(("127.0.0.1", 0), _FakeHandler)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.server_address[1]}/0"


class _FakeHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        server: FakeNode = self.server  # type: ignore[assignment]
        reader = hiredis.Reader()
        while True:
            try:
                data = self.request.recv(65536)
            except OSError:
                return
            if not data:
                return
            reader.feed(data)
            while (frame := reader.gets()) is not False:
                name = frame[0].upper()
                if name == b"HELLO":
                    self.request.sendall(HELLO_REPLY)
                elif name == b"CLIENT":
                    self.request.sendall(b"+OK\r\n")
                else:
                    server.commands.append(frame)
                    if server.reply == CLOSE:
                        self.request.close()
                        return
                    if server.reply is not None:
                        self.request.sendall(server.reply)


@contextmanager
def fake_node(reply: bytes | None) -> Iterator[FakeNode]:
    server = FakeNode(reply)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def options(*urls: str, attempts: int = 2, timeout: float = 2.0) -> ClientOptions:
    return ClientOptions(
        nodes=urls, db=None, socket_timeout=timeout, connect_timeout=1.0, retry_attempts=attempts, retry_backoff=0.01
    )


def retries(reason: str) -> float:
    return REGISTRY.get_sample_value("atlas_client_retries_total", {"reason": reason}) or 0.0


@pytest.fixture
def atlas_node(atlas_server) -> str:
    return f"redis://127.0.0.1:{atlas_server}/0"


def test_a_call_runs_against_atlas(atlas_node):
    client = AtlasClient(options(atlas_node))
    client.call(lambda node: node.set("client-test", "1"))
    assert client.call(lambda node: node.get("client-test")) == b"1"
    client.close()


def test_a_leader_change_moves_the_call_to_the_next_node(atlas_node):
    with fake_node(b"-TRYAGAIN the cluster is electing a leader\r\n") as electing:
        before = retries("leader_change")
        client = AtlasClient(options(electing.url, atlas_node))
        assert client.call(lambda node: node.ping()) is True
        assert len(electing.commands) == 1
        assert retries("leader_change") == before + 1
        # The client stays on the node that answered.
        client.call(lambda node: node.ping())
        assert len(electing.commands) == 1
        client.close()


def test_a_leader_change_that_does_not_settle_is_unavailable_after_bounded_retries():
    with fake_node(b"-CLUSTERDOWN no leader\r\n") as node:
        client = AtlasClient(options(node.url, attempts=3))
        with pytest.raises(AtlasUnavailable) as caught:
            client.call(lambda n: n.get("k"))
        assert caught.value.reason == "leader_change"
        assert len(node.commands) == 4, "the first try and three retries"
        client.close()


def test_other_error_replies_are_not_retried():
    with fake_node(b"-ERR something else\r\n") as node:
        client = AtlasClient(options(node.url))
        with pytest.raises(redis.exceptions.ResponseError, match="something else"):
            client.call(lambda n: n.get("k"))
        assert len(node.commands) == 1
        client.close()


def test_a_timeout_is_bounded_and_not_retried():
    with fake_node(None) as silent:
        client = AtlasClient(options(silent.url, timeout=0.3))
        started = time.monotonic()
        with pytest.raises(AtlasUnavailable) as caught:
            client.call(lambda n: n.get("k"))
        assert caught.value.reason == "timeout"
        assert time.monotonic() - started < 2.0
        assert len(silent.commands) == 1
        client.close()


def test_a_refused_connection_is_unavailable_quickly():
    port = free_port()
    client = AtlasClient(options(f"redis://127.0.0.1:{port}/0"))
    started = time.monotonic()
    with pytest.raises(AtlasUnavailable) as caught:
        client.call(lambda n: n.ping())
    assert caught.value.reason == "connection"
    assert time.monotonic() - started < 1.0


def test_a_connection_lost_mid_call_is_retried_on_the_next_node(atlas_node):
    """A node that dies with the command in flight (as a leader does when it is killed)."""
    with fake_node(CLOSE) as dying:
        before = retries("connection")
        client = AtlasClient(options(dying.url, atlas_node))
        assert client.call(lambda node: node.set("k", "v")) is True
        assert len(dying.commands) == 1
        assert retries("connection") == before + 1
        client.close()


def test_a_transaction_meeting_a_leader_change_is_retried_on_the_next_node(atlas_node):
    def transaction(node: redis.Redis) -> list[object]:
        with node.pipeline(transaction=True) as pipe:
            pipe.set("tx", "1")
            pipe.get("tx")
            return pipe.execute()

    with fake_node(b"-TRYAGAIN electing\r\n") as electing:
        client = AtlasClient(options(electing.url, atlas_node))
        assert client.call(transaction) == [True, b"1"]
        assert electing.commands, "the first try went to the electing node"
        client.close()


def test_leader_change_errors_are_recognised():
    assert is_leader_change(redis.exceptions.ResponseError("TRYAGAIN electing"))
    assert is_leader_change(
        redis.exceptions.ResponseError("Command # 1 (GET k) of pipeline caused error: LOADING dataset")
    )
    assert is_leader_change(redis.exceptions.ResponseError("NOTLEADER leader is 2"))
    assert is_leader_change(redis.exceptions.TryAgainError("electing"))  # redis-py strips the code
    assert is_leader_change(redis.exceptions.ReadOnlyError("You can't write against a read only replica."))
    assert not is_leader_change(redis.exceptions.ResponseError("ERR wrong number of arguments"))
    assert not is_leader_change(redis.exceptions.ResponseError("WRONGTYPE Operation against a key"))
