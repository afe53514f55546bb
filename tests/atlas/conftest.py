import pytest

from atlas.commands.session import ServerState, Session, build_table, reset_command_stats
from atlas.protocol import ErrorReply
from atlas.store.keyspace import Store


class FakeClock:
    """A wall clock the test moves by hand."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Client:
    """A session driven without sockets: call("SET", "k", "v") returns the reply value, and raises
    ErrorReply for an error reply."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.pushes: list[bytes] = []
        session.writer = self.pushes.append

    def call(self, *args: object) -> object:
        frame = [arg if isinstance(arg, bytes) else str(arg).encode() for arg in args]
        reply = self.session.execute(frame)
        if isinstance(reply, ErrorReply):
            raise reply
        return reply


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def state(clock: FakeClock) -> ServerState:
    build_table()
    reset_command_stats()
    return ServerState(store=Store(clock=clock))


@pytest.fixture
def client(state: ServerState) -> Client:
    return Client(state.new_session("127.0.0.1:50000", "127.0.0.1:6380"))


@pytest.fixture
def propagated(state: ServerState) -> list[tuple[int, list[bytes]]]:
    """Every change the store propagates, as (db, argv)."""
    changes: list[tuple[int, list[bytes]]] = []
    state.store.add_listener(lambda db, argv: changes.append((db, list(argv))))
    return changes
