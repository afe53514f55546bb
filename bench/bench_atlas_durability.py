"""make bench-atlas, durability part: ATLAS with persistence against Redis 7 with persistence.

1. SET with every write fsynced before its reply: ATLAS --sync-mode every against redis-server
   --appendonly yes --appendfsync always, redis-benchmark -t set -c 50 with -P 1 and -P 16,
   alternating which goes first, BENCH_ROUNDS rounds; medians and the ATLAS/Redis ratio.
2. SET latency while a snapshot of BENCH_KEYS keys (default 1,000,000) is taken (BGSAVE): one
   client times SETs before and during the snapshot, on ATLAS and on Redis (both without an AOF,
   so that only the snapshot shows); p50, p99, max, and the snapshot's duration.
3. Recovery: the time from start to the first PING answered, and the load time the server reports,
   for BENCH_KEYS keys from a snapshot and from an AOF alone, ATLAS against Redis (RDB and AOF).

Needs redis-server and redis-benchmark (Debian: redis-server, redis-tools); says so and returns
when they are missing. Run alone with `python bench/bench_atlas_durability.py`.
"""

from __future__ import annotations

import csv
import io
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Resp:
    """A minimal blocking RESP client (no dependency on the project's virtualenv)."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=600)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""

    def call(self, *args: str | bytes) -> bytes:
        parts = [b"*%d\r\n" % len(args)]
        for arg in args:
            data = arg.encode() if isinstance(arg, str) else arg
            parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
        self.sock.sendall(b"".join(parts))
        return self._reply()

    def _line(self) -> bytes:
        while b"\r\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\r\n", 1)
        return line

    def _reply(self) -> bytes:
        line = self._line()
        if line[:1] == b"$":
            length = int(line[1:])
            if length < 0:
                return b""
            while len(self.buffer) < length + 2:
                self.buffer += self.sock.recv(65536)
            data, self.buffer = self.buffer[:length], self.buffer[length + 2 :]
            return data
        if line[:1] == b"-":
            raise RuntimeError(line[1:].decode())
        return line[1:]

    def info(self, section: str) -> dict[str, str]:
        text = self.call("INFO", section).decode()
        return dict(line.split(":", 1) for line in text.splitlines() if ":" in line and not line.startswith("#"))

    def close(self) -> None:
        self.sock.close()


class Server:
    """A running ATLAS or Redis, restartable on the same data dir."""

    def __init__(self, kind: str, workdir: Path, *flags: str) -> None:
        self.kind = kind
        self.dir = workdir / f"{kind}-{free_port()}"
        self.dir.mkdir()
        self.flags = flags
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.log = self.dir / "server.log"

    def start(self) -> float:
        """Start; return the seconds until it answers PING (a start-up that loads data included)."""
        self.port = free_port()
        if self.kind == "atlas":
            argv = [
                sys.executable,
                str(BASE_DIR / "manage.py"),
                "runatlas",
                "--listen",
                f"127.0.0.1:{self.port}",
                "--metrics-listen",
                f"127.0.0.1:{free_port()}",
                "--data-dir",
                str(self.dir / "data"),
                *self.flags,
            ]
            env = {**os.environ, "HELIOS_VAR_DIR": str(self.dir / "var"), "HELIOS_GATEWAY_LOG_LEVEL": "warning"}
        else:
            argv = [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.dir),
                *self.flags,
            ]
            env = dict(os.environ)
        started = time.monotonic()
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = started + 600
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                sys.exit(f"{self.kind} exited with {self.process.returncode}; see {self.log}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(64).startswith(b"+PONG"):
                        return time.monotonic() - started
            except OSError:
                pass
            time.sleep(0.02)
        sys.exit(f"{self.kind} did not answer within 600 s")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(120)
            except subprocess.TimeoutExpired:
                self.kill()

    def load_time(self) -> float:
        """The load time the server itself reports (ATLAS: INFO; Redis: its log)."""
        if self.kind == "atlas":
            client = Resp(self.port)
            try:
                return float(client.info("persistence")["atlas_load_time_sec"])
            finally:
                client.close()
        text = self.log.read_text(errors="replace")
        found = re.findall(r"DB loaded from (?:disk|append only file): ([\d.]+) seconds", text)
        return float(found[-1]) if found else float("nan")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def redis_benchmark(port: int, pipeline: int, requests: int) -> float:
    result = subprocess.run(
        [
            *("redis-benchmark", "-p", str(port), "-t", "set", "-n", str(requests), "-c", "50"),
            *("-P", str(pipeline), "-r", "100000", "--csv", "-q"),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    rows = list(csv.reader(io.StringIO(result.stdout)))
    return float(rows[1][1])


def fill(port: int, keys: int, batch: int = 10_000) -> None:
    """BENCH_KEYS keys of 16-byte values, pipelined in batches of `batch` commands."""
    client = Resp(port)
    for start in range(0, keys, batch):
        stop = min(start + batch, keys)
        stream = bytearray()
        for i in range(start, stop):
            key = b"key:%d" % i
            stream += b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$16\r\nvalue-%010d\r\n" % (len(key), key, i)
        client.sock.sendall(stream)
        expected = b"+OK\r\n" * (stop - start)
        while len(client.buffer) < len(expected):
            chunk = client.sock.recv(1 << 20)
            if not chunk:
                raise ConnectionError("closed while loading")
            client.buffer += chunk
        if client.buffer != expected:
            sys.exit(f"loading failed: {client.buffer[:200]!r}")
        client.buffer = b""
    client.close()


def wait_for_snapshot(client: Resp, saves_before: str) -> float:
    started = time.monotonic()
    while True:
        info = client.info("persistence")
        if info.get("rdb_bgsave_in_progress") == "0" and info.get("rdb_last_save_time") != saves_before:
            return time.monotonic() - started
        time.sleep(0.02)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


def time_sets(client: Resp, until: Callable[[], bool], limit: float) -> list[float]:
    """Time one SET after another until `until()` (asked every 50 SETs) or `limit` seconds."""
    latencies: list[float] = []
    deadline = time.monotonic() + limit
    number = 0
    while time.monotonic() < deadline and not (number % 50 == 0 and until()):
        number += 1
        started = time.perf_counter()
        client.call("SET", b"probe:%d" % (number % 1000), b"x" * 16)
        latencies.append(time.perf_counter() - started)
    return latencies


def fsync_comparison(workdir: Path, rounds: int) -> None:
    requests = int(os.environ.get("BENCH_DURABLE_REQUESTS", "50000"))
    atlas = Server("atlas", workdir, "--sync-mode", "every", "--snapshot-interval", "off")
    redis = Server("redis", workdir, "--save", "", "--appendonly", "yes", "--appendfsync", "always")
    servers = {"atlas": atlas, "redis": redis}
    print(f"\n== SET, every write fsynced before its reply: redis-benchmark -t set -n {requests} -c 50")
    print("   ATLAS --sync-mode every  vs  redis-server --appendonly yes --appendfsync always")
    try:
        for server in servers.values():
            server.start()
        rps: dict[tuple[str, int], list[float]] = {}
        cpu: dict[tuple[str, int], list[float]] = {}
        for round_number in range(rounds):
            for pipeline in (1, 16):
                order = ["atlas", "redis"] if round_number % 2 == 0 else ["redis", "atlas"]
                for name in order:
                    server = servers[name]
                    assert server.process is not None
                    before = cpu_seconds(server.process.pid)
                    value = redis_benchmark(server.port, pipeline, requests)
                    used = cpu_seconds(server.process.pid) - before
                    rps.setdefault((name, pipeline), []).append(value)
                    cpu.setdefault((name, pipeline), []).append(used / requests * 1e6)
                    print(f"  round {round_number + 1} -P {pipeline:<2} {name:<5} SET={value:,.0f}")
        print(
            f"\n{'-P':>3} {'ATLAS req/s':>12} {'Redis req/s':>12} {'ratio':>6}   goal   CPU us/cmd ATLAS, Redis, ratio"
        )
        for pipeline, goal in ((1, 0.9), (16, 0.7)):
            atlas_rps = statistics.median(rps[("atlas", pipeline)])
            redis_rps = statistics.median(rps[("redis", pipeline)])
            atlas_cpu = statistics.median(cpu[("atlas", pipeline)])
            redis_cpu = statistics.median(cpu[("redis", pipeline)])
            print(
                f"{pipeline:>3} {atlas_rps:>12,.0f} {redis_rps:>12,.0f} {atlas_rps / redis_rps:>6.2f}   >= {goal}"
                f"   {atlas_cpu:.1f}, {redis_cpu:.1f}, {atlas_cpu / redis_cpu:.2f}"
            )
    finally:
        for server in servers.values():
            server.stop()


def snapshot_latency(workdir: Path, keys: int, rounds: int) -> None:
    print(f"\n== SET latency while a snapshot of {keys:,} keys is taken (BGSAVE); no AOF on either side")
    atlas = Server("atlas", workdir, "--appendonly", "no", "--snapshot-interval", "off")
    redis = Server("redis", workdir, "--save", "", "--appendonly", "no")
    rows = []
    try:
        for server in (atlas, redis):
            server.start()
            fill(server.port, keys)
            client = Resp(server.port)
            baseline: list[float] = []
            during: list[float] = []
            durations = []
            for _ in range(rounds):
                baseline += time_sets(client, lambda: False, 1.0)
                before = client.info("persistence").get("rdb_last_save_time", "")
                time.sleep(1.1)  # rdb_last_save_time has a resolution of one second
                client.call("BGSAVE")
                started = time.monotonic()

                def done(client: Resp = client, before: str = before) -> bool:
                    info = client.info("persistence")
                    return info.get("rdb_bgsave_in_progress") == "0" and info.get("rdb_last_save_time") != before

                during += time_sets(client, done, 600)
                durations.append(time.monotonic() - started)
            client.close()
            rows.append((server.kind, baseline, during, durations))
            server.stop()
        print(f"{'server':<6} {'snapshot s':>10} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}   without: p50, p99 ms")
        for kind, baseline, during, durations in rows:
            print(
                f"{kind:<6} {statistics.median(durations):>10.2f} {percentile(during, 0.5) * 1e3:>8.2f} "
                f"{percentile(during, 0.99) * 1e3:>8.2f} {max(during) * 1e3:>8.1f}   "
                f"{percentile(baseline, 0.5) * 1e3:>8.2f}, {percentile(baseline, 0.99) * 1e3:.2f}"
            )
        for kind, baseline, during, _ in rows:
            effect = percentile(during, 0.99) / percentile(baseline, 0.99)
            print(f"{kind}: p99 during the snapshot / p99 without: {effect:.2f}")
    finally:
        atlas.stop()
        redis.stop()


def recovery(workdir: Path, keys: int, rounds: int) -> None:
    print(f"\n== Recovery of {keys:,} keys: start to first PING (and the load time the server logs)")
    cases = [
        ("atlas", "snapshot", ("--appendonly", "yes", "--snapshot-interval", "off"), "BGSAVE"),
        ("atlas", "AOF only", ("--appendonly", "yes", "--sync-mode", "none", "--snapshot-interval", "off"), None),
        ("redis", "RDB", ("--save", "", "--appendonly", "no"), "BGSAVE"),
        (
            "redis",
            "AOF only",
            ("--save", "", "--appendonly", "yes", "--appendfsync", "no", "--aof-use-rdb-preamble", "no"),
            None,
        ),
    ]
    results = []
    for kind, what, flags, save in cases:
        server = Server(kind, workdir, *flags)
        try:
            server.start()
            fill(server.port, keys)
            client = Resp(server.port)
            if save:
                before = client.info("persistence").get("rdb_last_save_time", "")
                time.sleep(1.1)
                client.call(save)
                wait_for_snapshot(client, before)
            client.close()
            starts, loads = [], []
            for _ in range(rounds):
                server.kill()
                starts.append(server.start())
                loads.append(server.load_time())
                client = Resp(server.port)
                loaded = int(client.call("DBSIZE"))
                client.close()
                if loaded != keys:
                    sys.exit(f"{kind} {what}: {loaded} keys after a restart, expected {keys}")
            results.append((kind, what, statistics.median(starts), statistics.median(loads)))
        finally:
            server.stop()
            shutil.rmtree(server.dir, ignore_errors=True)
    print(f"{'server':<6} {'from':<9} {'start to PING s':>15} {'load s':>8}")
    for kind, what, start, load in results:
        print(f"{kind:<6} {what:<9} {start:>15.2f} {load:>8.2f}")
    print(
        f"ATLAS/Redis, start to PING: snapshot/RDB {results[0][2] / results[2][2]:.2f}, "
        f"AOF {results[1][2] / results[3][2]:.2f} (ATLAS's includes ~1-2 s of Django start-up)"
    )


def durability_benchmarks(rounds: int) -> None:
    missing = [tool for tool in ("redis-server", "redis-benchmark") if shutil.which(tool) is None]
    if missing:
        tools = ", ".join(missing)
        print(f"bench-atlas durability: {tools} not installed (apt install redis-server redis-tools); skipping.")
        return
    keys = int(os.environ.get("BENCH_KEYS", "1000000"))
    workdir = Path(tempfile.mkdtemp(prefix="bench-atlas-durability-"))
    try:
        fsync_comparison(workdir, rounds)
        snapshot_latency(workdir, keys, rounds)
        recovery(workdir, keys, rounds)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    durability_benchmarks(int(os.environ.get("BENCH_ROUNDS", "3")))
