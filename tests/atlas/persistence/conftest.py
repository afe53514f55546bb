"""A node's persistence driven in-process: a real data dir, the real Connection class fed bytes
through mock transports, and a loop whose callbacks the test runs by hand."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from atlas.commands.session import RuntimeConfig, ServerState
from atlas.persistence.aof import FileOps
from atlas.persistence.engine import Persistence, PersistenceOptions
from atlas.protocol import encode_command
from atlas.server import AtlasServer, Connection, ListenAddress
from tests.atlas.test_server_protocol import MockTransport


class FakeLoop:
    """call_soon only queues; run() is one event-loop iteration's worth of callbacks."""

    def __init__(self) -> None:
        self.ready: list[Callable[[], object]] = []

    def call_soon(self, callback: Callable[..., object], *args: object) -> None:
        self.ready.append(lambda: callback(*args))

    call_soon_threadsafe = call_soon

    def run(self) -> None:
        while self.ready:
            ready, self.ready = self.ready, []
            for callback in ready:
                callback()


class Ops(FileOps):
    """The real system calls, counted, with faults to switch on: `fail_write` / `fail_fsync` /
    `fail_truncate` hold an errno (or None)."""

    def __init__(self) -> None:
        self.writes = 0
        self.fsyncs = 0
        self.fail_write: int | None = None
        self.fail_fsync: int | None = None
        self.fail_truncate: int | None = None
        self.partial = False  # a failing write first writes half of what it was given

    def pwrite(self, fd: int, data: memoryview, offset: int) -> int:  # type: ignore[override]
        if self.fail_write is not None:
            if self.partial and len(data) > 1:
                os.pwrite(fd, data[: len(data) // 2], offset)
                self.partial = False
                return len(data) // 2
            raise OSError(self.fail_write, os.strerror(self.fail_write))
        self.writes += 1
        return os.pwrite(fd, data, offset)

    def fdatasync(self, fd: int) -> None:  # type: ignore[override]
        if self.fail_fsync is not None:
            raise OSError(self.fail_fsync, os.strerror(self.fail_fsync))
        self.fsyncs += 1
        os.fdatasync(fd)

    def fallocate(self, fd: int, offset: int, length: int) -> None:  # type: ignore[override]
        if self.fail_write is not None:  # a full disk has no room to reserve either
            raise OSError(self.fail_write, os.strerror(self.fail_write))
        os.posix_fallocate(fd, offset, length)

    def ftruncate(self, fd: int, size: int) -> None:  # type: ignore[override]
        if self.fail_truncate is not None:
            raise OSError(self.fail_truncate, os.strerror(self.fail_truncate))
        os.ftruncate(fd, size)


ENOSPC = errno.ENOSPC
EIO = errno.EIO


class Node:
    """ServerState + Persistence + AtlasServer (not listening) on one data dir."""

    def __init__(self, data_dir: Path, appendfsync: str = "always", appendonly: bool = True) -> None:
        self.data_dir = data_dir
        self.loop = FakeLoop()
        self.ops = Ops()
        self.state = ServerState(config=RuntimeConfig(appendfsync=appendfsync, appendonly=appendonly))
        self.persistence = Persistence(self.state, PersistenceOptions(data_dir, appendonly=appendonly), self.ops)
        self.report = self.persistence.recover()
        self.server = AtlasServer(self.state, ListenAddress("127.0.0.1", 0))
        if appendonly:
            self.server.reply_gate = self.persistence
        self.persistence.start(self.loop, cron=False)  # type: ignore[arg-type]

    def connect(self) -> tuple[Connection, MockTransport]:
        connection = Connection(self.server)
        transport = MockTransport()
        connection.connection_made(transport)  # type: ignore[arg-type]
        return connection, transport

    def send(self, connection: Connection, *argv: bytes | str) -> None:
        connection.data_received(encode_command([a if isinstance(a, bytes) else a.encode() for a in argv]))

    def call(self, *argv: bytes | str) -> bytes:
        """One command on a fresh connection, through one loop iteration: the bytes answered."""
        connection, transport = self.connect()
        self.send(connection, *argv)
        self.loop.run()
        return transport.output

    def crash(self) -> None:
        """What kill -9 leaves: no flush, no save; descriptors closed by the kernel."""
        if self.persistence.child is not None:
            self.persistence.child.kill()
        if self.persistence.aof is not None:
            self.persistence.aof.close()
        self.persistence.datadir.unlock()

    def stop(self, save: bool = False) -> None:
        self.persistence.stop(save)


@pytest.fixture
def make_node(tmp_path: Path) -> Iterator[Callable[..., Node]]:
    nodes: list[Node] = []

    def make(data_dir: Path | None = None, **options: object) -> Node:
        node = Node(data_dir or tmp_path / "data", **options)  # type: ignore[arg-type]
        nodes.append(node)
        return node

    yield make
    for node in nodes:
        node.crash()


def keyspace(state: ServerState) -> dict[tuple[int, bytes], tuple[str, object, int | None]]:
    """Everything in a keyspace, comparable: (db, key) -> (type, value, absolute deadline)."""
    out: dict[tuple[int, bytes], tuple[str, object, int | None]] = {}
    for db in state.store.dbs:
        for key, value in db.data.items():
            kind = type(value).__name__
            if kind == "ZSet":
                shown: object = list(value.order)
            elif kind == "deque":
                shown = list(value)
            elif kind == "set":
                shown = sorted(value)
            else:
                shown = value
            out[(db.index, key)] = (kind, shown, db.expires.get(key))
    return out
