"""A small replicated key-value store on RaftNode: what the multi-process tests run, and an example.

    HELIOS_CLUSTER_SECRET=... python -m raft.demo --id 1 --listen 127.0.0.1:7001 \\
        --client 127.0.0.1:8001 --data-dir var/demo/1 \\
        --peers 1=127.0.0.1:7001,2=127.0.0.1:7002,3=127.0.0.1:7003

The client port speaks length-prefixed msgpack (a u32 big-endian length, then the payload):
a request is [request id, op, args], the answer [request id, status, value]. Status "ok" carries
the result; "fail" means the request certainly did nothing (value: the reason and, when known,
the leader's id); "unknown" means it may have taken effect (a timeout, the node stopping);
"error" is a bad request. Ops:

    set [key, value, client_id, seq] -> None       incr [key, client_id, seq] -> new integer
    cas [key, expected, new, client_id, seq] -> True if it swapped, else False
    get [key] -> value or None (linearizable: ReadIndex)     get [key, "stale"] -> local value
    status [] -> RaftNode.status()      dump [] -> {"applied": index, "data": {...}} (local)
    add [id, host, port, voter]   remove [id]   transfer [id]   snapshot []

`python -m raft.demo client 127.0.0.1:8001 set greeting hello` sends one request and prints the
answer as JSON. Writes carry a client id and sequence number, so a retry after "unknown" is applied once.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import struct
import sys
from pathlib import Path
from typing import Any

import msgpack

from raft.core import ConfChangeRefused, Entry, NotLeader, ProposalDropped, TransferRefused
from raft.node import (
    NodeConfig,
    NodeError,
    NodeIdentityError,
    NodeStopped,
    OutcomeUnknown,
    ProposalLost,
    RaftNode,
    SessionExpired,
    Unavailable,
    parse_address,
    parse_node_id,
    parse_peers,
)
from raft.storage import StorageError
from raft.transport import RemoteError

logger = logging.getLogger(__name__)

LENGTH = struct.Struct(">I")
MAX_REQUEST_BYTES = 1024 * 1024
SECRET_ENV = "HELIOS_CLUSTER_SECRET"  # noqa: S105 - the name of a variable, not a secret


def _pack(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)  # type: ignore[no-any-return]


class KVStateMachine:
    """A dict of keys to values (str, int or bytes), changed only by committed commands."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}

    def apply(self, entry: Entry) -> bytes:
        command = msgpack.unpackb(entry.data, raw=False)
        op, key = command[0], command[1]
        if op == "set":
            self.data[key] = command[2]
            return _pack(None)
        if op == "incr":
            value = self.data.get(key, 0)
            if type(value) is not int:
                return _pack({"error": "value is not an integer"})
            self.data[key] = value + 1
            return _pack(value + 1)
        if op == "cas":
            if self.data.get(key) == command[2]:
                self.data[key] = command[3]
                return _pack(True)
            return _pack(False)
        if op == "del":
            return _pack(self.data.pop(key, None) is not None)
        return _pack({"error": f"unknown command {op!r}"})

    def snapshot(self) -> bytes:
        return _pack(self.data)

    def restore(self, data: bytes) -> None:
        self.data = msgpack.unpackb(data, raw=False)


class DemoServer:
    """The client port of one demo node."""

    def __init__(self, node: RaftNode, fsm: KVStateMachine) -> None:
        self.node = node
        self.fsm = fsm

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        tasks: set[asyncio.Task[None]] = set()
        lock = asyncio.Lock()
        try:
            while True:
                header = await reader.readexactly(LENGTH.size)
                (length,) = LENGTH.unpack(header)
                if length > MAX_REQUEST_BYTES:
                    return
                request = msgpack.unpackb(await reader.readexactly(length), raw=False)
                task = asyncio.get_running_loop().create_task(self._answer(request, writer, lock))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
        except (asyncio.IncompleteReadError, ConnectionError, ValueError, msgpack.UnpackException):
            return
        finally:
            for task in tasks:
                task.cancel()
            writer.close()

    async def _answer(self, request: Any, writer: asyncio.StreamWriter, lock: asyncio.Lock) -> None:
        request_id = request[0] if type(request) is list and request else None
        try:
            status, value = "ok", await self.run(str(request[1]), list(request[2]))
        except (NotLeader, Unavailable, ProposalDropped, ProposalLost, SessionExpired) as exc:
            status, value = "fail", {"reason": str(exc), "leader": getattr(exc, "leader", None)}
        except (OutcomeUnknown, NodeStopped) as exc:
            status, value = "unknown", {"reason": str(exc)}
        except (ConfChangeRefused, TransferRefused, NodeError, RemoteError) as exc:
            status, value = "fail", {"reason": f"{exc.__class__.__name__}: {exc}"}
        except (IndexError, TypeError, ValueError, KeyError) as exc:
            status, value = "error", {"reason": f"bad request: {exc!r}"}
        payload = _pack([request_id, status, value])
        async with lock:
            writer.write(LENGTH.pack(len(payload)) + payload)
            with contextlib.suppress(ConnectionError):
                await writer.drain()

    async def run(self, op: str, args: list[Any]) -> Any:
        node = self.node
        if op == "set":
            key, value, client_id, seq = args
            return msgpack.unpackb(await node.propose(_pack(["set", key, value]), client_id=client_id, seq=seq))
        if op == "incr":
            key, client_id, seq = args
            return msgpack.unpackb(await node.propose(_pack(["incr", key]), client_id=client_id, seq=seq))
        if op == "cas":
            key, expected, new, client_id, seq = args
            reply = await node.propose(_pack(["cas", key, expected, new]), client_id=client_id, seq=seq)
            return msgpack.unpackb(reply)
        if op == "get":
            if len(args) < 2 or args[1] != "stale":
                await node.read_index()
            return self.fsm.data.get(args[0])
        if op == "status":
            return node.status()
        if op == "dump":
            return {"applied": node.applied_index, "data": self.fsm.data}
        if op == "add":
            node_id, host, port, voter = args
            await node.add_member(int(node_id), (str(host), int(port)), voter=bool(voter))
            return None
        if op == "remove":
            await node.remove_member(int(args[0]))
            return None
        if op == "transfer":
            await node.transfer_leadership(int(args[0]))
            return None
        if op == "snapshot":
            return await node.snapshot_now()
        raise ValueError(f"unknown op {op!r}")


def _duration(text: str) -> float:
    text = text.strip()
    if text.endswith("ms"):
        return float(text[:-2]) / 1000
    return float(text.removesuffix("s"))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m raft.demo", description=__doc__.split("\n")[0])
    parser.add_argument("--id", required=True, help="this node's id (N or node-N)")
    parser.add_argument("--listen", required=True, help="Raft address host:port")
    parser.add_argument("--advertise", help="the Raft address peers use (default: --listen)")
    parser.add_argument("--client", required=True, help="client port host:port")
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--peers", default="", help="founding members id=host:port,... (this node included)")
    parser.add_argument("--join", help="join a running cluster through this member's Raft address")
    parser.add_argument("--learner", action="store_true", help="with --join: stay a learner")
    parser.add_argument("--cluster-name", default="helios")
    parser.add_argument("--heartbeat", default="50ms")
    parser.add_argument("--election-timeout", default="150ms")
    parser.add_argument("--snapshot-entries", type=int, default=10_000)
    parser.add_argument("--no-fsync", action="store_true")
    parser.add_argument("--tls-cert")
    parser.add_argument("--tls-key")
    parser.add_argument("--tls-ca")
    return parser


async def serve(config: NodeConfig, client: tuple[str, int]) -> int:
    fsm = KVStateMachine()
    node = RaftNode(config, fsm)
    await node.start()
    server = DemoServer(node, fsm)
    listener = await asyncio.start_server(server.handle, client[0], client[1])
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    waiter = loop.create_task(node.wait_stopped())
    stopper = loop.create_task(stop.wait())
    await asyncio.wait([waiter, stopper], return_when=asyncio.FIRST_COMPLETED)
    listener.close()
    failed = node.failure is not None
    await node.stop()
    stopper.cancel()
    return 1 if failed else 0


def client_main(argv: list[str]) -> int:
    """`python -m raft.demo client HOST:PORT OP [ARG ...]`: one request, the answer as JSON on stdout.

    Arguments that read as integers are sent as integers; writes get a fresh client id.
    """
    if len(argv) < 2:
        sys.stderr.write("usage: python -m raft.demo client HOST:PORT OP [ARG ...]\n")
        return 2
    host, port = parse_address(argv[0])
    op, raw_args = argv[1], argv[2:]
    args: list[Any] = [int(a) if a.lstrip("-").isdigit() else a for a in raw_args]
    if op in ("set", "incr", "cas"):
        args += [os.urandom(6).hex(), 1]
    payload = _pack([1, op, args])
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(LENGTH.pack(len(payload)) + payload)
        data = b""
        while len(data) < LENGTH.size or len(data) < LENGTH.size + LENGTH.unpack(data[: LENGTH.size])[0]:
            chunk = sock.recv(65536)
            if not chunk:
                sys.stderr.write("raft.demo: the node closed the connection\n")
                return 1
            data += chunk
    _, status, value = msgpack.unpackb(data[LENGTH.size :], raw=False)
    sys.stdout.write(json.dumps({"status": status, "value": value}, default=repr) + "\n")
    return 0 if status == "ok" else 1


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["client"]:
        return client_main(argv[1:])
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format=f"%(asctime)s node-{args.id} %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    secret = os.environ.get(SECRET_ENV, "")
    if len(secret) < 16:
        sys.stderr.write(f"raft.demo: set {SECRET_ENV} to the cluster secret (at least 16 characters)\n")
        return 2
    try:
        config = NodeConfig(
            node_id=parse_node_id(args.id),
            data_dir=Path(args.data_dir),
            listen=parse_address(args.listen),
            advertise=parse_address(args.advertise) if args.advertise else None,
            secret=secret.encode(),
            peers=parse_peers(args.peers),
            join=parse_address(args.join) if args.join else None,
            join_as_learner=args.learner,
            cluster_name=args.cluster_name,
            heartbeat=_duration(args.heartbeat),
            election_timeout=_duration(args.election_timeout),
            snapshot_entries=args.snapshot_entries,
            fsync=not args.no_fsync,
            tls_cert=args.tls_cert,
            tls_key=args.tls_key,
            tls_ca=args.tls_ca,
        )
        config.validate()
        client = parse_address(args.client)
    except ValueError as exc:
        sys.stderr.write(f"raft.demo: {exc}\n")
        return 2
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:  # pragma: no cover - uvloop is a dependency
        runner = asyncio.run
    try:
        return int(runner(serve(config, client)))
    except (NodeIdentityError, StorageError) as exc:
        sys.stderr.write(f"raft.demo: {exc}\n")
        return 2


if __name__ == "__main__":
    sys.exit(main())
