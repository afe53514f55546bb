"""`make bench-proxy`: wrk -t2 -c50 through the HELIOS proxy, direct to the backend, and through
nginx as a reverse proxy to the same backend, one worker each, alternating, medians of ROUNDS.

The backend is nginx itself answering a fixed 23-byte body (so that the backend is not what is
measured). Needs `wrk` and `nginx` (Debian packages; .ci/run installs them): without them the
benchmark says so and exits 0. It installs nothing. Run it alone: `flock /tmp/helios-bench.lock
make bench-proxy`, since the machine is shared and only ratios within one run mean anything.
"""

from __future__ import annotations

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
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
SECONDS = int(os.environ.get("BENCH_SECONDS", "5"))
WRK = ["wrk", "-t2", "-c50", f"-d{SECONDS}s", "--latency"]

NGINX_BACKEND = """
worker_processes 1;
daemon off;
pid {dir}/backend.pid;
error_log {dir}/backend-error.log;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  keepalive_requests 1000000;
  server {{
    listen 127.0.0.1:{port};
    location / {{ return 200 "hello from the backend\\n"; }}
  }}
}}
"""
NGINX_PROXY = """
worker_processes 1;
daemon off;
pid {dir}/proxy.pid;
error_log {dir}/proxy-error.log;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  keepalive_requests 1000000;
  upstream backend {{ server 127.0.0.1:{backend}; keepalive 64; }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    }}
  }}
}}
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"port {port} did not open")


def to_ms(text: str) -> float:
    number, unit = re.match(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def run_wrk(port: int) -> tuple[float, float, float]:
    output = subprocess.run([*WRK, f"http://127.0.0.1:{port}/"], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    p50 = to_ms(re.search(r"^\s+50%\s+(\S+)", output, re.MULTILINE).group(1))  # type: ignore[union-attr]
    p99 = to_ms(re.search(r"^\s+99%\s+(\S+)", output, re.MULTILINE).group(1))  # type: ignore[union-attr]
    if "Non-2xx" in output or "Socket errors" in output:
        print(f"  warning: errors on port {port}:\n{output}")
    return rps, p50, p99


def main() -> int:
    missing = [tool for tool in ("wrk", "nginx") if shutil.which(tool) is None]
    if missing:
        print(f"bench-proxy: skipped, {' and '.join(missing)} not installed (apt-get install wrk nginx-light)")
        return 0
    work = Path(tempfile.mkdtemp(prefix="helios-bench-proxy-"))
    backend_port, nginx_port, proxy_port, metrics_port = (free_port() for _ in range(4))
    (work / "backend.conf").write_text(NGINX_BACKEND.format(dir=work, port=backend_port))
    (work / "proxy.conf").write_text(NGINX_PROXY.format(dir=work, port=nginx_port, backend=backend_port))
    processes = []
    try:
        for conf in ("backend.conf", "proxy.conf"):
            processes.append(subprocess.Popen(["nginx", "-c", str(work / conf), "-p", str(work)]))
        log = open(work / "helios-proxy.log", "wb")  # noqa: SIM115 - closed at exit
        processes.append(
            subprocess.Popen(
                [
                    sys.executable,
                    str(BASE_DIR / "manage.py"),
                    "runproxy",
                    "--listen",
                    f"127.0.0.1:{proxy_port}",
                    "--metrics-listen",
                    f"127.0.0.1:{metrics_port}",
                    "--workers",
                    "1",
                    "--backend",
                    f"http://127.0.0.1:{backend_port}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=BASE_DIR,
                env={**os.environ, "HELIOS_VAR_DIR": str(work / "var"), "HELIOS_PROXY_ACCESS_LOG": "false"},
                start_new_session=True,
            )
        )
        for port in (backend_port, nginx_port, proxy_port):
            wait_port(port)
        time.sleep(1.0)
        targets = {"helios proxy": proxy_port, "nginx proxy": nginx_port, "direct": backend_port}
        for port in targets.values():  # warm up: pooled connections, caches
            subprocess.run(["wrk", "-t2", "-c50", "-d1s", f"http://127.0.0.1:{port}/"], capture_output=True, check=True)
        results: dict[str, list[tuple[float, float, float]]] = {name: [] for name in targets}
        for round_number in range(ROUNDS):
            for name, port in targets.items():
                results[name].append(run_wrk(port))
            print(f"round {round_number + 1}/{ROUNDS}: " + ", ".join(f"{n} {results[n][-1][0]:.0f}/s" for n in targets))
        print(f"\nwrk -t2 -c50 -d{SECONDS}s, {ROUNDS} rounds alternating, medians (one worker each; access logs off)")
        print(f"{'target':<14}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}")
        medians = {}
        for name, rounds in results.items():
            medians[name] = tuple(statistics.median(values) for values in zip(*rounds, strict=True))
            rps, p50, p99 = medians[name]
            print(f"{name:<14}{rps:>10.0f}{p50:>10.2f}{p99:>10.2f}")
        ours, theirs = medians["helios proxy"], medians["nginx proxy"]
        print(
            f"\nhelios/nginx: throughput {ours[0] / theirs[0]:.2f}x (goal >= 0.6x), "
            f"p99 {ours[2] / theirs[2]:.2f}x (goal <= 1.5x)"
        )
        return 0
    finally:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
