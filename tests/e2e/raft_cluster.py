"""A harness for multi-process Raft clusters on loopback: node processes, clients, fault-injecting proxies.

RaftCluster starts N node processes (by default `python -m raft.demo`, the replicated key-value
store; `command` makes it run another program with the same flags), each with its own data
directory, Raft port and client port. With `proxies=True` every directed link i -> j goes through
a TCP proxy in the test process (node i is told that node j lives at the proxy), so a test can cut
any link in either direction: `partition({1}, {2, 3})`, `cut(1, 2)`, `heal()`.

KVClient speaks the demo's client protocol (length-prefixed msgpack); `request()` never raises
for a lost answer: it returns ("unknown", ...) on a timeout or a dropped connection, which is
what a linearizability history needs.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import socket
import struct
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack

from tests.helpers import ManagedProcess, base_env, free_port

LENGTH = struct.Struct(">I")
SECRET = "test-cluster-secret-0123456789"
DEMO = [sys.executable, "-m", "raft.demo"]


class KVClient:
    """A blocking client for one node's client port. Not thread-safe: one per thread."""

    def __init__(self, port: int, *, timeout: float = 3.0) -> None:
        self.port = port
        self.timeout = timeout
        self.sock: socket.socket | None = None
        self.ids = itertools.count(1)
        self.client_id = uuid.uuid4().hex[:12]
        self.seq = 0

    def _connect(self) -> socket.socket:
        if self.sock is None:
            sock = socket.create_connection(("127.0.0.1", self.port), timeout=self.timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.sock = sock
        return self.sock

    def close(self) -> None:
        if self.sock is not None:
            with contextlib.suppress(OSError):
                self.sock.close()
            self.sock = None

    def _recv_exactly(self, sock: socket.socket, size: int) -> bytes:
        chunks = bytearray()
        while len(chunks) < size:
            chunk = sock.recv(size - len(chunks))
            if not chunk:
                raise ConnectionError("connection closed")
            chunks += chunk
        return bytes(chunks)

    def request(self, op: str, *args: Any, timeout: float | None = None) -> tuple[str, Any]:
        """Send one request and wait for its answer: (status, value). Status "unknown" when none came."""
        request_id = next(self.ids)
        try:
            sock = self._connect()
        except OSError as exc:
            return "fail", {"reason": f"cannot connect: {exc}"}  # nothing was sent
        sock.settimeout(timeout or self.timeout)
        payload = msgpack.packb([request_id, op, list(args)], use_bin_type=True)
        try:
            sock.sendall(LENGTH.pack(len(payload)) + payload)
            while True:
                (length,) = LENGTH.unpack(self._recv_exactly(sock, LENGTH.size))
                answer = msgpack.unpackb(self._recv_exactly(sock, length), raw=False)
                if answer[0] == request_id:
                    return answer[1], answer[2]
        except (OSError, ConnectionError, ValueError) as exc:
            self.close()
            return "unknown", {"reason": f"{exc.__class__.__name__}: {exc}"}

    def write(self, op: str, *args: Any, timeout: float | None = None) -> tuple[str, Any]:
        """A write under this client's session; a session the cluster no longer knows starts afresh."""
        status, value = self.request(op, *args, self.client_id, self.next_seq(), timeout=timeout)
        if status == "fail" and "session" in str(value):
            self.client_id = uuid.uuid4().hex[:12]  # the session expired (e.g. its first write was lost)
            self.seq = 0
        return status, value

    # writes carry a client id and sequence number: a retry of the same write keeps its number
    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def set(self, key: str, value: Any, *, timeout: float | None = None) -> tuple[str, Any]:
        return self.write("set", key, value, timeout=timeout)

    def incr(self, key: str, *, timeout: float | None = None) -> tuple[str, Any]:
        return self.write("incr", key, timeout=timeout)

    def cas(self, key: str, expected: Any, new: Any, *, timeout: float | None = None) -> tuple[str, Any]:
        return self.write("cas", key, expected, new, timeout=timeout)

    def get(self, key: str, *, stale: bool = False, **kw: Any) -> tuple[str, Any]:
        return self.request("get", key, *(["stale"] if stale else []), **kw)

    def status(self) -> dict[str, Any] | None:
        status, value = self.request("status", timeout=2.0)
        return value if status == "ok" else None


# --- per-link proxies ----------------------------------------------------------------------------


class _Link:
    """One directed link's proxy: forwards while up; when cut, resets its connections and refuses new ones."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.up = True
        self.connections: set[asyncio.WriteTransport] = set()
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.up:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        pair = (writer.transport, up_writer.transport)
        self.connections.update(pair)

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            try:
                while data := await source.read(65536):
                    if not self.up:
                        break
                    sink.write(data)
                    await sink.drain()
            except (OSError, ConnectionError):
                pass
            finally:
                sink.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self.connections.difference_update(pair)

    def set_up(self, up: bool) -> None:
        self.up = up
        if not up:
            for transport in list(self.connections):
                transport.abort()
            self.connections.clear()

    async def close(self) -> None:
        self.set_up(False)
        if self.server is not None:
            self.server.close()


class ProxyHub:
    """All link proxies of a cluster, on an event loop in a background thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="raft-proxies", daemon=True)
        self.thread.start()
        self.links: dict[tuple[int, int], _Link] = {}

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    def add(self, src: int, dst: int, target_port: int) -> int:
        link = _Link(target_port)
        self._run(link.start())
        self.links[(src, dst)] = link
        return link.port

    def set_link(self, src: int, dst: int, up: bool) -> None:
        """Cut or restore a link; when this returns, a cut link's connections are already reset."""
        link = self.links[(src, dst)]

        async def apply() -> None:
            link.set_up(up)

        self._run(apply())

    def close(self) -> None:
        for link in self.links.values():
            with contextlib.suppress(Exception):
                self._run(link.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


# --- the cluster -----------------------------------------------------------------------------------


@dataclass
class NodeSpec:
    id: int
    raft_port: int
    client_port: int
    data_dir: Path
    process: ManagedProcess | None = None
    extra: list[str] = field(default_factory=list)
    starts: int = 0


class RaftCluster:
    """N node processes on loopback; see the module docstring. Use as a context manager or call close()."""

    def __init__(
        self,
        base: Path,
        size: int = 3,
        *,
        proxies: bool = False,
        heartbeat: str = "50ms",
        election_timeout: str = "300ms",
        snapshot_entries: int = 10_000,
        command: Sequence[str] = DEMO,
        extra_flags: Sequence[str] = (),
    ) -> None:
        self.base = base
        self.command = list(command)
        self.flags = [
            "--heartbeat",
            heartbeat,
            "--election-timeout",
            election_timeout,
            "--snapshot-entries",
            str(snapshot_entries),
            *extra_flags,
        ]
        self.nodes: dict[int, NodeSpec] = {}
        self.clients: list[KVClient] = []
        for node_id in range(1, size + 1):
            self.nodes[node_id] = self._spec(node_id)
        self.founders = list(self.nodes)
        self.hub = ProxyHub() if proxies else None
        self.peer_address: dict[tuple[int, int], int] = {}
        if self.hub is not None:
            for src, dst in itertools.permutations(self.founders, 2):
                self.peer_address[(src, dst)] = self.hub.add(src, dst, self.nodes[dst].raft_port)

    def _spec(self, node_id: int) -> NodeSpec:
        return NodeSpec(node_id, free_port(), free_port(), self.base / f"node-{node_id}")

    def __enter__(self) -> RaftCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- processes -------------------------------------------------------------------------------

    def peers_flag(self, node_id: int) -> str:
        parts = []
        for peer in self.founders:
            port = self.nodes[peer].raft_port if peer == node_id else self.peer_address.get((node_id, peer))
            parts.append(f"{peer}=127.0.0.1:{port or self.nodes[peer].raft_port}")
        return ",".join(parts)

    def argv(self, node_id: int) -> list[str]:
        spec = self.nodes[node_id]
        argv = [
            *self.command,
            "--id",
            str(node_id),
            "--listen",
            f"127.0.0.1:{spec.raft_port}",
            "--client",
            f"127.0.0.1:{spec.client_port}",
            "--data-dir",
            str(spec.data_dir),
            *self.flags,
            *spec.extra,
        ]
        if node_id in self.founders:
            argv += ["--peers", self.peers_flag(node_id)]
        return argv

    def start(self, node_id: int, *, wait: bool = True) -> ManagedProcess:
        spec = self.nodes[node_id]
        assert spec.process is None or spec.process.process.poll() is not None, f"node {node_id} is running"
        if spec.process is not None:
            spec.process.stop()
        spec.starts += 1
        env = base_env(HELIOS_CLUSTER_SECRET=SECRET)
        spec.process = ManagedProcess(self.argv(node_id), env, self.base / f"node-{node_id}.{spec.starts}.log")
        if wait:
            self.wait_serving(node_id)
        return spec.process

    def start_all(self) -> None:
        for node_id in self.nodes:
            self.start(node_id, wait=False)
        for node_id in self.nodes:
            self.wait_serving(node_id)

    def add_node(self, node_id: int, *, via: int, learner: bool = False) -> NodeSpec:
        """Start a new node that joins the running cluster through member `via`."""
        spec = self._spec(node_id)
        spec.extra = ["--join", f"127.0.0.1:{self.nodes[via].raft_port}", *(["--learner"] if learner else [])]
        self.nodes[node_id] = spec
        self.start(node_id)
        return spec

    def wait_serving(self, node_id: int, timeout: float = 20.0) -> None:
        spec = self.nodes[node_id]
        deadline = time.monotonic() + timeout
        while True:
            assert spec.process is not None
            if spec.process.process.poll() is not None:
                raise AssertionError(f"node {node_id} exited:\n{spec.process.output()[-3000:]}")
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", spec.client_port), timeout=1).close()
                return
            if time.monotonic() > deadline:
                tail = spec.process.output()[-3000:]
                raise AssertionError(f"node {node_id} did not serve within {timeout}s:\n{tail}")
            time.sleep(0.05)

    def kill(self, node_id: int, sig: int = signal.SIGKILL) -> None:
        """Send a signal to a node's process group; SIGKILL and SIGTERM also wait for it to exit."""
        process = self.nodes[node_id].process
        assert process is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        if sig in (signal.SIGKILL, signal.SIGTERM):
            process.process.wait(15)

    def pause(self, node_id: int) -> None:
        self.kill(node_id, signal.SIGSTOP)

    def resume(self, node_id: int) -> None:
        self.kill(node_id, signal.SIGCONT)

    def running(self, node_id: int) -> bool:
        process = self.nodes[node_id].process
        return process is not None and process.process.poll() is None

    def close(self) -> None:
        for client in self.clients:
            client.close()
        for spec in self.nodes.values():
            if spec.process is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(spec.process.pid, signal.SIGCONT)
                spec.process.stop(timeout=5)
        if self.hub is not None:
            self.hub.close()

    def logs(self) -> str:
        out = []
        for spec in self.nodes.values():
            for path in sorted(self.base.glob(f"node-{spec.id}.*.log")):
                out.append(f"==== {path.name}\n{path.read_text(errors='replace')[-4000:]}")
        return "\n".join(out)

    # --- faults ----------------------------------------------------------------------------------

    def cut(self, src: int, dst: int) -> None:
        """Cut the link src -> dst (src's messages and requests to dst, and their answers)."""
        assert self.hub is not None, "start the cluster with proxies=True"
        self.hub.set_link(src, dst, False)

    def partition(self, *groups: Iterable[int]) -> None:
        """Cut every link between nodes of different groups, both ways."""
        sets = [set(g) for g in groups]
        for src, dst in self.peer_address:
            same = any(src in g and dst in g for g in sets)
            assert self.hub is not None
            self.hub.set_link(src, dst, same)

    def heal(self) -> None:
        if self.hub is not None:
            for src, dst in self.peer_address:
                self.hub.set_link(src, dst, True)

    # --- observing -------------------------------------------------------------------------------

    def client(self, node_id: int, timeout: float = 3.0) -> KVClient:
        """A client of one node, closed with the cluster."""
        client = KVClient(self.nodes[node_id].client_port, timeout=timeout)
        self.clients.append(client)
        return client

    def status(self, node_id: int) -> dict[str, Any] | None:
        if not self.running(node_id):
            return None
        client = KVClient(self.nodes[node_id].client_port, timeout=2.0)
        try:
            return client.status()
        finally:
            client.close()

    def wait_leader(self, among: Iterable[int] | None = None, timeout: float = 15.0) -> int:
        """Wait until the running nodes in `among` agree on one leader that is one of them; return it."""
        members = list(among) if among is not None else list(self.nodes)
        deadline = time.monotonic() + timeout
        while True:
            statuses = {n: self.status(n) for n in members if self.running(n)}
            leaders = {s["leader_id"] for s in statuses.values() if s is not None}
            if len(leaders) == 1 and None not in statuses.values():
                (leader,) = leaders
                lead = statuses.get(leader)
                if leader in statuses and lead is not None and lead["role"] == "leader":
                    return int(leader)
            if time.monotonic() > deadline:
                raise AssertionError(f"no agreed leader among {members} within {timeout}s: {statuses}\n{self.logs()}")
            time.sleep(0.05)

    def wait_until(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}\n{self.logs()}")
            time.sleep(0.05)

    def dump(self, node_id: int) -> dict[str, Any] | None:
        client = KVClient(self.nodes[node_id].client_port, timeout=3.0)
        try:
            status, value = client.request("dump")
        finally:
            client.close()
        return value if status == "ok" else None

    def wait_converged(self, nodes: Iterable[int], timeout: float = 15.0) -> dict[str, Any]:
        """Wait until the given nodes applied the same index with the same data; return that data."""
        members = list(nodes)
        found: dict[int, Any] = {}

        def same() -> bool:
            for n in members:
                found[n] = self.dump(n)
            dumps = list(found.values())
            return None not in dumps and all(d == dumps[0] for d in dumps)

        self.wait_until(same, timeout, f"nodes {members} to converge: {found}")
        return dict(found[members[0]]["data"])
