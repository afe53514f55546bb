"""ATLAS durability with real processes and kill -9: no acknowledged write is lost, torn tails are
cut, corruption is refused, snapshots and rewrites survive a crash at any instant, backups taken
under load restore consistently, and a full disk answers MISCONF until space returns."""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
import resource
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import requests
from django.core.management import call_command

from tests.e2e.atlas_processes import wait_for_resp
from tests.helpers import MANAGE, ManagedProcess, base_env, free_port

SPEC = {b"string", b"hash", b"list", b"set", b"zset"}


class Node:
    """One runatlas process on a data dir that outlives it."""

    def __init__(self, tmp_path: Path, data_dir: Path, *flags: str) -> None:
        self.tmp_path = tmp_path
        self.data_dir = data_dir
        self.flags = flags
        self.process: ManagedProcess | None = None
        self.port = 0
        self.metrics_port = 0
        self.starts = 0

    def start(self, *extra: str) -> Node:
        self.port, self.metrics_port = free_port(), free_port()
        self.starts += 1
        argv = [
            *MANAGE,
            "runatlas",
            "--listen",
            f"127.0.0.1:{self.port}",
            "--metrics-listen",
            f"127.0.0.1:{self.metrics_port}",
            "--data-dir",
            str(self.data_dir),
            *self.flags,
            *extra,
        ]
        env = base_env(HELIOS_VAR_DIR=str(self.tmp_path / "var"))
        self.process = ManagedProcess(argv, env, self.tmp_path / f"atlas-{self.starts}.log")
        wait_for_resp(self.port, self.process)
        return self

    def client(self, **options: object) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=10, protocol=2, **options)

    def kill9(self) -> None:
        """SIGKILL to the whole process group (the server and a snapshot child, if any)."""
        assert self.process is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.stop()

    def stop(self) -> str:
        assert self.process is not None
        self.process.stop()
        return self.process.output()

    def output(self) -> str:
        assert self.process is not None
        return self.process.output()

    def info(self) -> dict[str, object]:
        return self.client().info("persistence")

    def metric(self, name: str) -> float:
        text = requests.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5).text
        for line in text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        raise AssertionError(f"no {name} in /metrics")


@pytest.fixture
def node_factory(tmp_path: Path) -> Iterator[callable]:
    nodes: list[Node] = []

    def make(*flags: str, data_dir: Path | None = None) -> Node:
        node = Node(tmp_path, data_dir or tmp_path / "data", *flags)
        nodes.append(node)
        return node

    yield make
    for node in nodes:
        if node.process is not None:
            node.process.stop()


# -- a write load that records what was acknowledged --------------------------------------------


class Writer(threading.Thread):
    """Writes SET / INCR / RPUSH / MULTI(HSET+SADD) in turn and records each acknowledgement."""

    def __init__(self, port: int, name: str) -> None:
        super().__init__(daemon=True)
        self.client = redis.Redis(port=port, socket_timeout=10, protocol=2)
        self.name = name
        self.acked: list[tuple[str, int]] = []
        self.in_flight: tuple[str, int] | None = None
        self.stopping = threading.Event()

    def run(self) -> None:
        kinds = ("set", "incr", "rpush", "multi")
        number = 0
        while not self.stopping.is_set() and number < 100_000:
            number += 1
            kind = kinds[number % 4]
            self.in_flight = (kind, number)
            try:
                if kind == "set":
                    self.client.set(f"{self.name}:k{number}", f"v{number}")
                elif kind == "incr":
                    self.client.incr(f"{self.name}:counter")
                elif kind == "rpush":
                    self.client.rpush(f"{self.name}:list", number)
                else:
                    pipe = self.client.pipeline(transaction=True)
                    pipe.hset(f"{self.name}:h", f"f{number}", number)
                    pipe.sadd(f"{self.name}:s", number)
                    pipe.execute()
            except (redis.ConnectionError, redis.TimeoutError):
                return
            self.acked.append((kind, number))
            self.in_flight = None

    def verify(self, client: redis.Redis) -> None:
        """Every acknowledged write is there; nothing but them (and the one in flight) is."""
        acked = {kind: [n for k, n in self.acked if k == kind] for kind in ("set", "incr", "rpush", "multi")}
        flight = {self.in_flight} if self.in_flight else set()
        if acked["set"]:
            values = client.mget([f"{self.name}:k{number}" for number in acked["set"]])
            assert values == [f"v{number}".encode() for number in acked["set"]], self.name
        counter = int(client.get(f"{self.name}:counter") or 0)
        assert len(acked["incr"]) <= counter <= len(acked["incr"]) + 1, (self.name, counter, len(acked["incr"]))
        pushed = [int(n) for n in client.lrange(f"{self.name}:list", 0, -1)]
        assert pushed[: len(acked["rpush"])] == acked["rpush"], self.name
        assert set(pushed[len(acked["rpush"]) :]) <= {n for k, n in flight if k == "rpush"}
        fields = {int(v) for v in client.hvals(f"{self.name}:h")}
        members = {int(v) for v in client.smembers(f"{self.name}:s")}
        assert fields == members, "a transaction is applied whole or not at all"
        assert set(acked["multi"]) <= fields <= set(acked["multi"]) | {n for k, n in flight if k == "multi"}


def run_load(port: int, names: list[str], seconds: float) -> list[Writer]:
    writers = [Writer(port, name) for name in names]
    for writer in writers:
        writer.start()
    time.sleep(seconds)
    return writers


def settle(writers: list[Writer]) -> None:
    for writer in writers:
        writer.stopping.set()
        writer.join(15)
        assert not writer.is_alive()


# -- the proofs ---------------------------------------------------------------------------------


def test_kill_9_under_load_loses_no_acknowledged_write(node_factory):
    """--sync-mode every, snapshots every second (so rewrites run under the load too), kill -9 at a
    random instant, three times; each restart must hold every write acknowledged in every round."""
    node = node_factory("--sync-mode", "every", "--snapshot-interval", "1s")
    rng = random.Random()
    everyone: list[Writer] = []
    for round_number in range(3):
        node.start()
        client = node.client()
        for writer in everyone:
            writer.verify(client)
        writers = run_load(node.port, [f"r{round_number}w{i}" for i in range(4)], rng.uniform(0.5, 1.5))
        node.kill9()
        settle(writers)
        assert sum(len(w.acked) for w in writers) > 20, "the load ran"
        everyone += writers
    node.start()
    client = node.client()
    for writer in everyone:
        writer.verify(client)
    output = node.stop()
    assert "Traceback" not in output
    manifest = json.loads((node.data_dir / "atlas.manifest").read_text())
    if shutil.which("redis-check-aof"):
        for name in manifest["aof"]:
            result = subprocess.run(["redis-check-aof", str(node.data_dir / name)], capture_output=True, text=True)
            assert result.returncode == 0, result.stdout


def test_interval_mode_loses_nothing_to_kill_9_and_fsyncs_every_second(node_factory):
    node = node_factory("--sync-mode", "interval", "--snapshot-interval", "off").start()
    assert node.info()["atlas_sync_mode"] == "interval"
    writers = run_load(node.port, ["i0", "i1"], 0.3)
    fsyncs_before = node.metric("atlas_aof_fsync_seconds_count")
    started = time.monotonic()
    lags = []
    while time.monotonic() - started < 2.5:
        last_fsync = float(node.info()["aof_last_fsync_time"])
        if last_fsync:  # 0 until the first fsync
            lags.append(time.time() - last_fsync)
        time.sleep(0.25)
    fsyncs = node.metric("atlas_aof_fsync_seconds_count") - fsyncs_before
    elapsed = time.monotonic() - started
    node.kill9()
    settle(writers)
    assert 1 <= fsyncs <= elapsed + 2, fsyncs
    assert len(lags) >= 4
    assert max(lags) < 2.5, "what is not yet fsynced is at most about a second old"
    node.start()
    for writer in writers:
        writer.verify(node.client())


def dump(node: Node) -> dict[tuple[int, bytes], tuple[bytes, object, int]]:
    """The whole keyspace through the wire: type, value and absolute deadline of every key."""
    client = node.client(single_connection_client=True)
    out: dict[tuple[int, bytes], tuple[bytes, object, int]] = {}
    for db in range(16):
        client.execute_command("SELECT", db)
        for key in client.scan_iter(count=500):
            kind = client.type(key)
            if kind == b"string":
                value: object = client.get(key)
            elif kind == b"hash":
                value = client.hgetall(key)
            elif kind == b"list":
                value = client.lrange(key, 0, -1)
            elif kind == b"set":
                value = sorted(client.smembers(key))
            else:
                value = client.zrange(key, 0, -1, withscores=True)
            out[(db, key)] = (kind, value, client.execute_command("PEXPIRETIME", key))
    client.close()
    return out


def populate(node: Node) -> None:
    client = node.client()
    client.set("s", "plain")
    client.set(b"bin\x00\r\nkey", b"\xff\x00\r\n")
    client.set("ttl-long", "v", ex=3600)
    client.hset("h", mapping={"a": "1", "b": "2"})
    client.rpush("l", *[str(i) for i in range(100)])
    client.sadd("set", *[str(i) for i in range(50)])
    client.zadd("z", {"a": 1.5, "b": -2, "c": float("inf")})
    client.execute_command("CL.THROTTLE", "limit", "5", "10", "60")
    client.incrbyfloat("f", 2.5)
    node.client(db=5).set("db5", "five", px=600000)


def test_snapshot_and_aof_reproduce_the_keyspace_torn_tails_are_cut_corruption_is_refused(node_factory, tmp_path):
    node = node_factory("--snapshot-interval", "off").start()
    populate(node)
    client = node.client()
    client.bgsave()
    deadline = time.monotonic() + 30
    while node.info()["rdb_saves"] < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    # After the snapshot, in the AOF: changes to snapshotted keys, new keys, deletes, TTL changes.
    client.hset("h", "c", "3")
    client.lpop("l")
    client.spop("set", 3)
    client.zincrby("z", 2, "a")
    client.expire("s", 1000)
    client.persist("ttl-long")
    client.delete("f")
    client.set("after", "snapshot", px=2000)  # 2 s left when the node dies
    before = dump(node)
    deadline_ms = before.pop((0, b"after"))[2]
    node.kill9()
    aofs = json.loads((node.data_dir / "atlas.manifest").read_text())["aof"]
    last = node.data_dir / aofs[-1]
    original = last.read_bytes()
    assert original, "the changes after the snapshot are in the AOF"
    torn = b"*3\r\n$3\r\nSET\r\n$4\r\ntorn\r\n$10\r\nhal"  # a crash in the middle of a write
    with open(last, "ab") as aof:
        aof.write(torn)
    node.start()
    assert (
        f"torn record (file ends inside a command): truncating {len(torn)} bytes at offset {len(original)}"
        in node.output()
    )
    assert last.read_bytes()[: len(original) + 1] in (original, original + b"*"), "cut, then appended to"
    now = dump(node)
    if time.time() * 1000 < deadline_ms - 50:  # the restart took less than 2 s: the key keeps its deadline
        assert now.pop((0, b"after")) == (b"string", b"snapshot", deadline_ms)
    assert now == before
    time.sleep(max(0.0, deadline_ms / 1000 - time.time()) + 0.05)
    assert node.client().get("after") is None, "a key does not outlive its deadline across a restart"
    node.client().set("more", "1")
    node.kill9()

    data = last.read_bytes()
    offset = data.index(b"$4\r\nHSET") - 4  # the HSET after the snapshot, in the middle of the file
    assert data[offset : offset + 1] == b"*"
    last.write_bytes(data[:offset] + b"?" + data[offset + 1 :])
    refused = subprocess.run(
        [
            *MANAGE,
            "runatlas",
            "--listen",
            f"127.0.0.1:{free_port()}",
            "--metrics-listen",
            f"127.0.0.1:{free_port()}",
            "--data-dir",
            str(node.data_dir),
        ],
        env=base_env(HELIOS_VAR_DIR=str(tmp_path / "var")),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode != 0
    lines = [line for line in refused.stderr.splitlines() if "corrupt" in line]
    assert len(lines) == 1, refused.stderr
    assert f"{last} is corrupt at offset {offset} of {len(data)}" in lines[0]
    assert f"atlas_check_aof {last} --fix" in lines[0]
    fixed = subprocess.run(
        [*MANAGE, "atlas_check_aof", str(last), "--fix"],
        env=base_env(HELIOS_VAR_DIR=str(tmp_path / "var")),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert f"at offset {offset}" in fixed.stdout
    node.start()
    client = node.client()
    assert client.hget("h", "c") is None, "what followed the corruption is gone"
    assert client.get("s") == b"plain", "what preceded it is there"


def test_kill_9_during_a_snapshot_and_during_an_aof_rewrite_recovers_everything(node_factory):
    node = node_factory("--snapshot-interval", "off").start()
    client = node.client()
    pipe = client.pipeline(transaction=False)
    for i in range(1500):
        pipe.set(f"key:{i}", i)
    pipe.execute()
    expected = 1500
    for command in ("BGSAVE", "BGREWRITEAOF"):
        client.config_set("rdb-key-save-delay", "2000")  # 2 ms per key: a snapshot of several seconds
        client.execute_command(command)
        deadline = time.monotonic() + 10
        while node.info()["rdb_bgsave_in_progress"] != 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert node.info()["rdb_bgsave_in_progress"] == 1
        for i in range(300):
            client.set(f"{command}:{i}", i)  # acknowledged while the child writes
        expected += 300
        time.sleep(random.uniform(0.0, 0.5))
        assert node.info()["rdb_bgsave_in_progress"] == 1, "killed while the child runs"
        node.kill9()
        node.start()
        client = node.client()
        assert client.dbsize() == expected
        assert client.mget([f"{command}:{i}" for i in range(300)]) == [str(i).encode() for i in range(300)]
        assert not list(node.data_dir.glob("*.tmp"))
        manifest = json.loads((node.data_dir / "atlas.manifest").read_text())
        named = {manifest["snapshot"], *manifest["aof"]} - {None}
        assert {p.name for p in node.data_dir.iterdir() if p.suffix in (".aof", ".atlas")} == named
    client.execute_command("BGREWRITEAOF")  # and with no kill, a rewrite completes
    deadline = time.monotonic() + 30
    while node.info()["aof_rewrites"] < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert node.info()["aof_last_bgrewrite_status"] == "ok"
    node.kill9()
    node.start()
    assert node.client().dbsize() == expected
    assert node.info()["aof_current_size"] == 0 or node.info()["atlas_snapshot_file"]


def test_a_backup_taken_under_load_restores_to_a_consistent_state(node_factory, tmp_path):
    node = node_factory("--snapshot-interval", "off").start()
    acked = []
    stop = threading.Event()

    def transfer() -> None:
        client = node.client()
        number = 0
        while not stop.is_set():
            number += 1
            pipe = client.pipeline(transaction=True)
            pipe.incr("counter")
            pipe.rpush("log", number)
            pipe.execute()
            acked.append(number)

    writer = threading.Thread(target=transfer, daemon=True)
    writer.start()
    time.sleep(0.5)
    before = len(acked)
    out = io.StringIO()
    call_command("atlas_backup", str(tmp_path / "backup"), "--url", f"redis://127.0.0.1:{node.port}/0", stdout=out)
    after = len(acked)
    time.sleep(0.2)
    stop.set()
    writer.join(10)
    assert "backup of" in out.getvalue()
    call_command("atlas_restore", str(tmp_path / "backup"), "--data-dir", str(tmp_path / "restored"), stdout=out)
    restored = node_factory("--snapshot-interval", "off", data_dir=tmp_path / "restored").start()
    client = restored.client()
    count = int(client.get("counter"))
    assert client.lrange("log", 0, -1) == [str(n).encode() for n in range(1, count + 1)]
    assert before <= count <= after + 1, (before, count, after)
    assert count < len(acked), "the node went on writing after the backup"


def _mount_tmpfs(path: Path, size: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    return result.returncode == 0


@pytest.mark.parametrize("disk", ["tiny-tmpfs", "file-size-limit"])
def test_a_full_disk_answers_misconf_and_recovers_when_space_returns(node_factory, tmp_path, disk):
    data_dir = tmp_path / "disk" / "data"
    if disk == "tiny-tmpfs" and not _mount_tmpfs(tmp_path / "disk", "256k"):
        pytest.skip("mounting a tmpfs needs root (the file-size-limit case covers the same path)")
    try:
        node = node_factory("--snapshot-interval", "off", data_dir=data_dir).start()
        if disk == "file-size-limit":  # writes past 256 KiB fail with EFBIG, as a full disk would
            resource.prlimit(node.process.pid, resource.RLIMIT_FSIZE, (256 * 1024, resource.RLIM_INFINITY))
        client = node.client()
        value = "x" * 20_000
        acked = []
        error = None
        for i in range(40):
            try:
                client.set(f"k{i}", value)
            except redis.ResponseError as exc:
                error, failed = str(exc), f"k{i}"
                break
            acked.append(f"k{i}")
        assert error is not None, "the disk filled up"
        assert error.startswith("MISCONF Errors writing to the AOF file:"), error
        assert client.get(failed) is None, "the write that hit the full disk was not kept"
        assert node.info()["aof_last_write_status"] == "err"
        with pytest.raises(redis.ResponseError, match="MISCONF"):
            client.set("another", value)
        assert client.get(acked[0]) == value.encode(), "reads go on"
        if disk == "tiny-tmpfs":
            subprocess.run(["mount", "-o", "remount,size=8m", str(tmp_path / "disk")], check=True)
        else:
            resource.prlimit(node.process.pid, resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        deadline = time.monotonic() + 10
        while True:
            try:
                client.set("after", value)
                break
            except redis.ResponseError:
                assert time.monotonic() < deadline, "writes are accepted again once space returns"
                time.sleep(0.1)
        assert node.info()["aof_last_write_status"] == "ok"
        node.kill9()
        node.start()
        client = node.client()
        assert sorted(k.decode() for k in client.keys("*")) == sorted([*acked, "after"])
        node.stop()
    finally:
        if disk == "tiny-tmpfs":
            for started in [node] if "node" in locals() else []:
                if started.process is not None:
                    started.process.stop()
            subprocess.run(["umount", str(tmp_path / "disk")], capture_output=True)
