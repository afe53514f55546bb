"""`make bench-gateway`: wrk against GET /api/v1/kv/<key> with a valid token, and against /healthz
(the floor: the same gunicorn, uvicorn and middleware, no auth, no database, no ATLAS), through
gunicorn with 2 uvicorn workers and a runatlas, alternating, medians of BENCH_ROUNDS rounds. Then a
profile of the KV path (bench/profile_gateway.py) says where a request's time goes.

The rate limiter is on (every KV request runs CL.THROTTLE) with a bucket too big to refuse anything.
Access logs are off (log level warning) for both targets. Needs `wrk` (Debian package; .ci/run
installs it): without it the benchmark says so and exits 0. Run it alone: `flock
/tmp/helios-bench.lock make bench-gateway`; on a shared machine only the ratio means much.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests
from bench_proxy import free_port, to_ms, wait_port

BASE_DIR = Path(__file__).resolve().parent.parent
MANAGE = [sys.executable, str(BASE_DIR / "manage.py")]
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
SECONDS = int(os.environ.get("BENCH_SECONDS", "5"))
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "32"))
WRK = ["wrk", "-t2", f"-c{CONNECTIONS}", f"-d{SECONDS}s", "--latency"]
PASSWORD = "bench-password-long-enough"  # noqa: S105 - a throwaway user of a throwaway database
KEY = "bench:greeting"


def wait_http(url: str, process: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{url}: the process exited with {process.returncode}")
        try:
            requests.get(url, timeout=2)
            return
        except requests.RequestException:
            time.sleep(0.1)
    raise SystemExit(f"{url} did not answer")


def run_wrk(url: str, headers: list[str]) -> tuple[float, float, float]:
    output = subprocess.run([*WRK, *headers, url], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    p50 = to_ms(re.search(r"^\s+50%\s+(\S+)", output, re.MULTILINE).group(1))  # type: ignore[union-attr]
    p99 = to_ms(re.search(r"^\s+99%\s+(\S+)", output, re.MULTILINE).group(1))  # type: ignore[union-attr]
    if "Non-2xx" in output or "Socket errors" in output:
        print(f"  warning: errors against {url}:\n{output}")
    return rps, p50, p99


def user_with_a_key(base: str) -> str:
    """Register a user, write KEY, check that reading it is rate limited; the user's access token."""
    credentials = {"username": "bench", "password": PASSWORD}
    requests.post(f"{base}/api/v1/auth/register", json=credentials, timeout=30).raise_for_status()
    token: str = requests.post(f"{base}/api/v1/auth/login", json=credentials, timeout=30).json()["token"]
    auth = {"Authorization": f"Bearer {token}"}
    requests.put(f"{base}/api/v1/kv/{KEY}", json={"value": "hello"}, headers=auth, timeout=30).raise_for_status()
    check = requests.get(f"{base}/api/v1/kv/{KEY}", headers=auth, timeout=30)
    assert check.status_code == 200, check.text
    assert "RateLimit" in check.headers, check.headers
    return token


def print_medians(results: dict[str, list[tuple[float, float, float]]]) -> None:
    print(
        f"\nwrk -t2 -c{CONNECTIONS} -d{SECONDS}s, {ROUNDS} rounds alternating, medians "
        "(gunicorn, 2 uvicorn workers; rate limiter on; access log off)"
    )
    print(f"{'target':<24}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}")
    medians = {}
    for name, rounds in results.items():
        medians[name] = tuple(statistics.median(values) for values in zip(*rounds, strict=True))
        rps, p50, p99 = medians[name]
        print(f"{name:<24}{rps:>10.0f}{p50:>10.2f}{p99:>10.2f}")
    kv, floor = medians["GET /api/v1/kv/<key>"], medians["GET /healthz"]
    print(f"\nkv/healthz: throughput {kv[0] / floor[0]:.2f}x, p50 {kv[1] / floor[1]:.2f}x, p99 {kv[2] / floor[2]:.2f}x")


def main() -> int:
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # rounds show as they end
    if shutil.which("wrk") is None:
        print("bench-gateway: skipped, wrk is not installed (apt-get install wrk)")
        return 0
    work = Path(tempfile.mkdtemp(prefix="helios-bench-gateway-"))
    atlas_port, atlas_metrics, gateway_port = free_port(), free_port(), free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("HELIOS_") and k != "DATABASE_URL"},
        "HELIOS_VAR_DIR": str(work / "var"),
        "DATABASE_URL": f"sqlite:///{work / 'helios.sqlite3'}",
        "HELIOS_ATLAS_URL": f"redis://127.0.0.1:{atlas_port}/0",
        "HELIOS_GATEWAY_LOG_LEVEL": "warning",
        "HELIOS_GATEWAY_RATE_LIMIT_DEFAULT_CAPACITY": "1000000000",
        "HELIOS_GATEWAY_RATE_LIMIT_DEFAULT_RATE_NUM": "1000000",
    }
    processes: list[subprocess.Popen[bytes]] = []
    logs = open(work / "processes.log", "wb")  # noqa: SIM115 - closed at exit
    try:
        subprocess.run([*MANAGE, "migrate", "--noinput", "-v0"], env=env, check=True, cwd=BASE_DIR)
        processes.append(
            subprocess.Popen(
                [
                    *MANAGE,
                    "runatlas",
                    "--listen",
                    f"127.0.0.1:{atlas_port}",
                    "--metrics-listen",
                    f"127.0.0.1:{atlas_metrics}",
                    "--data-dir",
                    str(work / "atlas"),
                ],
                env=env,
                stdout=logs,
                stderr=subprocess.STDOUT,
                cwd=BASE_DIR,
                start_new_session=True,
            )
        )
        wait_port(atlas_port)
        processes.append(
            subprocess.Popen(
                [*MANAGE, "rungateway", "--listen", f"127.0.0.1:{gateway_port}", "--workers", "2"],
                env=env,
                stdout=logs,
                stderr=subprocess.STDOUT,
                cwd=BASE_DIR,
                start_new_session=True,
            )
        )
        base = f"http://127.0.0.1:{gateway_port}"
        wait_http(f"{base}/healthz", processes[-1])
        token = user_with_a_key(base)

        targets = {
            "GET /api/v1/kv/<key>": (f"{base}/api/v1/kv/{KEY}", ["-H", f"Authorization: Bearer {token}"]),
            "GET /healthz": (f"{base}/healthz", []),
        }
        for url, headers in targets.values():  # warm up: pooled connections, caches
            subprocess.run(["wrk", "-t2", f"-c{CONNECTIONS}", "-d1s", *headers, url], capture_output=True, check=True)
        results: dict[str, list[tuple[float, float, float]]] = {name: [] for name in targets}
        for round_number in range(ROUNDS):
            for name, (url, headers) in targets.items():
                results[name].append(run_wrk(url, headers))
            print(f"round {round_number + 1}/{ROUNDS}: " + ", ".join(f"{n} {results[n][-1][0]:.0f}/s" for n in targets))

        print_medians(results)
        for process in processes[1:]:  # the profile runs in process; the gateway would only compete
            process.send_signal(signal.SIGTERM)
            process.wait(15)
        print("\nprofile of the KV path (in process, Django's test client, the same ATLAS and database):")
        subprocess.run(
            [sys.executable, str(BASE_DIR / "bench" / "profile_gateway.py"), KEY], env=env, check=True, cwd=BASE_DIR
        )
        return 0
    finally:
        for process in processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in processes:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
        logs.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
