"""make bench-atlas: ATLAS against a real Redis 7, same machine, same run.

Starts `manage.py runatlas` and `redis-server` (no persistence) on free loopback ports, then runs
`redis-benchmark -t set,get,incr,lpush,hset -n N -c 50` with -P 1 and -P 16 against each,
alternating which goes first, for several rounds. Prints the median requests/s per command, the
ATLAS/Redis ratio, and the server CPU time per command (from /proc) with its ratio.

Needs redis-server and redis-benchmark (Debian: redis-server, redis-tools); says so and exits 0
when they are missing. BENCH_REQUESTS (default 200000) and BENCH_ROUNDS (default 3) scale it.
Both servers run without persistence here; bench_atlas_durability.py (BENCH_DURABILITY=0 skips it)
then compares them with it.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
TESTS = "set,get,incr,lpush,hset"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"server on port {port} exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(16).startswith(b"+PONG"):
                    return
        except OSError:
            time.sleep(0.1)
    sys.exit(f"server on port {port} did not start")


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def run_benchmark(port: int, pipeline: int, requests: int) -> dict[str, float]:
    result = subprocess.run(
        [
            "redis-benchmark",
            "-p",
            str(port),
            "-t",
            TESTS,
            "-n",
            str(requests),
            "-c",
            "50",
            "-P",
            str(pipeline),
            "--csv",
            "-q",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    rows = list(csv.reader(io.StringIO(result.stdout)))
    return {row[0]: float(row[1]) for row in rows[1:] if len(row) > 1}


def main() -> int:
    missing = [tool for tool in ("redis-server", "redis-benchmark") if shutil.which(tool) is None]
    if missing:
        print(f"bench-atlas: {', '.join(missing)} not installed (apt install redis-server redis-tools); skipping.")
        return 0
    requests = int(os.environ.get("BENCH_REQUESTS", "200000"))
    rounds = int(os.environ.get("BENCH_ROUNDS", "3"))
    workdir = Path(tempfile.mkdtemp(prefix="bench-atlas-"))
    atlas_port, metrics_port, redis_port = free_port(), free_port(), free_port()
    env = {**os.environ, "HELIOS_VAR_DIR": str(workdir / "var"), "HELIOS_GATEWAY_LOG_LEVEL": "warning"}
    atlas = subprocess.Popen(
        [
            sys.executable,
            str(BASE_DIR / "manage.py"),
            "runatlas",
            "--listen",
            f"127.0.0.1:{atlas_port}",
            "--metrics-listen",
            f"127.0.0.1:{metrics_port}",
            "--data-dir",
            str(workdir / "atlas"),
            "--appendonly",
            "no",
            "--snapshot-interval",
            "off",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    redis = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(redis_port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
        ],
        stdout=subprocess.DEVNULL,
    )
    servers = {"atlas": (atlas_port, atlas.pid), "redis": (redis_port, redis.pid)}
    try:
        wait_for_port(atlas_port, atlas)
        wait_for_port(redis_port, redis)
        rps: dict[tuple[str, int, str], list[float]] = {}
        cpu_per_command: dict[tuple[str, int], list[float]] = {}
        print(f"bench-atlas: {rounds} rounds, redis-benchmark -n {requests} -c 50, tests {TESTS}")
        for round_number in range(rounds):
            for pipeline in (1, 16):
                order = ["atlas", "redis"] if round_number % 2 == 0 else ["redis", "atlas"]
                for name in order:
                    port, pid = servers[name]
                    before = cpu_seconds(pid)
                    figures = run_benchmark(port, pipeline, requests)
                    used = cpu_seconds(pid) - before
                    for test, value in figures.items():
                        rps.setdefault((name, pipeline, test), []).append(value)
                    commands = requests * len(figures)
                    cpu_per_command.setdefault((name, pipeline), []).append(used / commands * 1e6)
                    print(
                        f"  round {round_number + 1} -P {pipeline:<2} {name:<5} "
                        + " ".join(f"{test}={value:,.0f}" for test, value in figures.items())
                    )
        print()
        print(f"{'command':<8} {'-P':>3} {'ATLAS req/s':>12} {'Redis req/s':>12} {'ratio':>6}")
        for pipeline in (1, 16):
            for test in TESTS.upper().split(","):
                atlas_rps = statistics.median(rps.get(("atlas", pipeline, test), [0]))
                redis_rps = statistics.median(rps.get(("redis", pipeline, test), [0]))
                ratio = atlas_rps / redis_rps if redis_rps else 0
                print(f"{test:<8} {pipeline:>3} {atlas_rps:>12,.0f} {redis_rps:>12,.0f} {ratio:>6.2f}")
        print()
        print(f"{'-P':>3} {'ATLAS CPU us/cmd':>17} {'Redis CPU us/cmd':>17} {'ratio':>6}")
        for pipeline in (1, 16):
            atlas_cpu = statistics.median(cpu_per_command[("atlas", pipeline)])
            redis_cpu = statistics.median(cpu_per_command[("redis", pipeline)])
            print(f"{pipeline:>3} {atlas_cpu:>17.2f} {redis_cpu:>17.2f} {atlas_cpu / redis_cpu:>6.2f}")
        print("\nGoals: ATLAS >= 0.9x Redis at -P 1, >= 0.7x at -P 16, CPU per command <= 1.5x Redis.")
    finally:
        for process in (atlas, redis):
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
        shutil.rmtree(workdir, ignore_errors=True)
    if os.environ.get("BENCH_DURABILITY", "1") != "0":
        from bench_atlas_durability import durability_benchmarks

        durability_benchmarks(rounds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
