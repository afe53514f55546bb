"""The connection layer fed bytes through a mock transport: batching, framing, limits, blocking."""

import asyncio

import pytest

from atlas.commands.session import ServerState
from atlas.protocol import encode_command
from atlas.server import AtlasServer, Connection, ListenAddress, ProtectedModeError, check_protected_mode


class MockTransport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False
        self.reading = True
        self.buffered = 0

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def close(self) -> None:
        self.closed = True

    abort = close

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str) -> object:
        return ("127.0.0.1", 40000) if name == "peername" else ("127.0.0.1", 6380)

    def set_write_buffer_limits(self, high: int, low: int) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    @property
    def output(self) -> bytes:
        return b"".join(self.writes)


@pytest.fixture
def server() -> AtlasServer:
    return AtlasServer(ServerState(), ListenAddress("127.0.0.1", 0))


def connect(server: AtlasServer) -> tuple[Connection, MockTransport]:
    connection = Connection(server)
    transport = MockTransport()
    connection.connection_made(transport)  # type: ignore[arg-type]
    return connection, transport


def test_a_pipeline_is_answered_with_one_write(server):
    connection, transport = connect(server)
    connection.data_received(encode_command([b"SET", b"k", b"v"]) + encode_command([b"GET", b"k"]) * 2)
    assert transport.writes == [b"+OK\r\n$1\r\nv\r\n$1\r\nv\r\n"]


def test_inline_ping_as_redis_benchmark_sends_it(server):
    connection, transport = connect(server)
    connection.data_received(b"PING\r\nPING\r\n")
    assert transport.output == b"+PONG\r\n+PONG\r\n"


def test_a_frame_sent_byte_by_byte_is_answered_once_complete(server):
    connection, transport = connect(server)
    for byte in encode_command([b"ECHO", b"hello"]):
        connection.data_received(bytes([byte]))
    assert transport.output == b"$5\r\nhello\r\n"
    assert not transport.closed


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        (b"*2147483647\r\n", b"-ERR Protocol error: invalid multibulk length\r\n"),
        (b"*1\r\n$-5\r\n", b"-ERR Protocol error: invalid bulk length\r\n"),
        (b"*1\r\n$99999999999\r\n", b"-ERR Protocol error: invalid bulk length\r\n"),
        (b"*1\r\n:5\r\n", b"-ERR Protocol error: expected '$', got a non-bulk argument\r\n"),
        (b"*2\r\n*1\r\n$1\r\na\r\n$1\r\nb\r\n", b"-ERR Protocol error: expected '$', got a non-bulk argument\r\n"),
        (b"*1\r\nxyz\r\n", b"-ERR Protocol error: expected '$', got 'x'\r\n"),
        (b">2147483647\r\n", b"-ERR Protocol error: expected '*', got '>'\r\n"),
    ],
)
def test_hostile_input_gets_an_error_and_a_closed_door(server, payload, error):
    connection, transport = connect(server)
    connection.data_received(encode_command([b"PING"]) + payload)
    assert transport.output.startswith(b"+PONG\r\n")
    assert transport.output.endswith(error)
    assert transport.closed


def test_other_clients_are_unaffected_by_a_hostile_one(server):
    good, good_transport = connect(server)
    bad, bad_transport = connect(server)
    bad.data_received(b"*2147483647\r\n")
    good.data_received(encode_command([b"PING"]))
    assert bad_transport.closed
    assert good_transport.output == b"+PONG\r\n"


def test_quit_answers_then_closes(server):
    connection, transport = connect(server)
    connection.data_received(encode_command([b"QUIT"]) + encode_command([b"PING"]))
    assert transport.output == b"+OK\r\n"
    assert transport.closed


def test_hello_3_switches_to_resp3_and_client_setinfo_answers(server):
    connection, transport = connect(server)
    connection.data_received(encode_command([b"HELLO", b"3"]))
    assert transport.output.startswith(b"%7\r\n")
    connection.data_received(encode_command([b"CLIENT", b"SETINFO", b"LIB-NAME", b"redis-py"]))
    assert transport.writes[-1] == b"+OK\r\n"
    connection.data_received(encode_command([b"GET", b"missing"]))
    assert transport.writes[-1] == b"_\r\n"
    assert not transport.closed


def test_a_client_that_does_not_read_stops_being_read(server):
    connection, transport = connect(server)
    connection.pause_writing()
    assert not transport.reading
    connection.resume_writing()
    assert transport.reading


def test_maxclients_refuses_one_more(server):
    server.state.config.maxclients = 1
    connect(server)
    _, transport = connect(server)
    assert transport.output == b"-ERR max number of clients reached\r\n"
    assert transport.closed


def test_a_blocked_client_is_served_by_a_push_and_then_runs_its_queued_commands(server):
    async def scenario():
        waiter, waiter_transport = connect(server)
        pusher, pusher_transport = connect(server)
        waiter.data_received(encode_command([b"BLPOP", b"q", b"0"]) + encode_command([b"ECHO", b"after"]))
        assert waiter_transport.output == b""
        waiter.data_received(encode_command([b"ECHO", b"while-blocked"]))
        pusher.data_received(encode_command([b"RPUSH", b"q", b"job"]))
        assert pusher_transport.output == b":1\r\n"
        await asyncio.sleep(0)
        assert waiter_transport.output == (
            b"*2\r\n$1\r\nq\r\n$3\r\njob\r\n" + b"$5\r\nafter\r\n" + b"$13\r\nwhile-blocked\r\n"
        )
        assert server.state.store.dbs[0].lookup(b"q") is None

    asyncio.run(scenario())


def test_a_blocked_client_times_out_with_a_null_array(server):
    async def scenario():
        waiter, transport = connect(server)
        waiter.data_received(encode_command([b"BLPOP", b"q", b"0.05"]))
        await asyncio.sleep(0.2)
        assert transport.output == b"*-1\r\n"

    asyncio.run(scenario())


def test_a_disconnected_waiter_is_not_served(server):
    async def scenario():
        gone, _ = connect(server)
        waiter, transport = connect(server)
        gone.data_received(encode_command([b"BLPOP", b"q", b"0"]))
        waiter.data_received(encode_command([b"BLPOP", b"q", b"0"]))
        gone.connection_lost(None)
        pusher, _ = connect(server)
        pusher.data_received(encode_command([b"RPUSH", b"q", b"only"]))
        assert transport.output == b"*2\r\n$1\r\nq\r\n$4\r\nonly\r\n"

    asyncio.run(scenario())


def test_protected_mode_refuses_an_open_unauthenticated_listener():
    check_protected_mode("127.0.0.1", "", True)
    check_protected_mode("0.0.0.0", "secret", True)
    check_protected_mode("0.0.0.0", "", False)
    with pytest.raises(ProtectedModeError, match="without a password"):
        check_protected_mode("0.0.0.0", "", True)
