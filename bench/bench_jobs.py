# ruff: noqa: PLW1510 - a command-line benchmark: it prints, and runs its own fixed commands
"""`make bench-jobs`: the HELIOS job queue on SQLite and PostgreSQL, and Celery on Redis, in one run.

Each system gets the same work: 10,000 no-op jobs, 2 worker processes x concurrency 4.
- drain: 10,000 jobs waiting before the workers start; first start to last finish.
- end to end: workers idle; from the first enqueue to the last job finished (HELIOS enqueues with
  enqueue_many, 500 jobs a statement; Celery with apply_async, one message each).
- enqueue: 1,000 jobs one by one (each its own commit / message), and 10,000 with enqueue_many.
- pickup latency: 200 single jobs, one at a time on idle workers: enqueue to task start, p50/p99.
Drain, end to end and enqueue rates are medians of --rounds rounds (3). Run it alone
(`flock /tmp/helios-bench.lock make bench-jobs`): the figures are wall-clock.

PostgreSQL: the server of HELIOS_BENCH_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/postgres);
a scratch database is created there and dropped. Celery: a throwaway virtualenv under var/bench,
the Redis at 127.0.0.1:6379 (HELIOS_BENCH_REDIS_URL). A missing PostgreSQL or Redis is reported
and skipped, not failed.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

BASE_DIR = Path(__file__).resolve().parent.parent
MANAGE = [sys.executable, str(BASE_DIR / "manage.py")]
JOBS = 10_000
CHUNK = 500
SINGLE_ENQUEUES = 1_000
LATENCY_SAMPLES = 200
WORKERS = 2
CONCURRENCY = 4
CELERY_VERSION = "5.7.0"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HELIOS_") and k != "DATABASE_URL"}
    env.update(extra)
    return env


# -- the HELIOS side, in a child process with Django set up on one scratch database -------------


class HeliosRun:
    """Measures one database. Runs in `--backend URL` child processes (Django configured for URL)."""

    def __init__(self, url: str, log_dir: Path) -> None:
        self.url = url
        self.log_dir = log_dir
        self.workers: list[subprocess.Popen[bytes]] = []

    def start_workers(self) -> None:
        # INFO: the bench waits for each worker's "worker_started" line (jobs themselves log at DEBUG).
        env = clean_env(DATABASE_URL=self.url, HELIOS_VAR_DIR=str(self.log_dir / "var"))
        for i in range(WORKERS):
            log = open(self.log_dir / f"worker-{i}.log", "ab")  # noqa: SIM115 - closed with the process
            argv = [*MANAGE, "runworker", "--worker-id", f"bench-{i}", "--concurrency", str(CONCURRENCY)]
            argv += ["--metrics-listen", f"127.0.0.1:{free_port()}", "--queues", "bench"]
            self.workers.append(subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=BASE_DIR))
            log.close()
        time.sleep(0.5)
        deadline = time.monotonic() + 60
        for i in range(WORKERS):
            while "worker_started" not in (self.log_dir / f"worker-{i}.log").read_text(errors="replace"):
                if time.monotonic() > deadline or self.workers[i].poll() is not None:
                    raise SystemExit(f"worker {i} did not start:\n{(self.log_dir / f'worker-{i}.log').read_text()}")
                time.sleep(0.05)

    def stop_workers(self) -> None:
        for worker in self.workers:
            worker.send_signal(signal.SIGTERM)
        for worker in self.workers:
            worker.wait(30)
        self.workers = []

    def wait_done(self, count: int, timeout: float = 300) -> None:
        from jobs.models import Job

        deadline = time.monotonic() + timeout
        while Job.objects.filter(queue="bench", status="COMPLETED").count() < count:
            if time.monotonic() > deadline:
                raise SystemExit("jobs did not complete in time")
            time.sleep(0.05)

    @staticmethod
    def reset() -> None:
        from jobs.models import Job

        Job.objects.filter(queue="bench").delete()

    def drain(self) -> float:
        from django.db.models import Max, Min

        from jobs.models import Job
        from jobs.tasks import echo

        self.reset()
        echo.enqueue_many([{}] * JOBS, queue="bench")
        self.start_workers()
        self.wait_done(JOBS)
        span = Job.objects.filter(queue="bench").aggregate(first=Min("started_at"), last=Max("finished_at"))
        self.stop_workers()
        return float(JOBS / (span["last"] - span["first"]).total_seconds())

    def end_to_end(self) -> float:
        from django.db.models import Max

        from jobs.models import Job
        from jobs.tasks import echo

        self.reset()
        self.start_workers()
        time.sleep(0.5)
        started = time.time()
        for _ in range(JOBS // CHUNK):
            echo.enqueue_many([{}] * CHUNK, queue="bench")
        self.wait_done(JOBS)
        last = Job.objects.filter(queue="bench").aggregate(last=Max("finished_at"))["last"]
        self.stop_workers()
        return float(JOBS / (last.timestamp() - started))

    def enqueue_rates(self) -> tuple[float, float]:
        from jobs.tasks import echo

        self.reset()
        started = time.perf_counter()
        for _ in range(SINGLE_ENQUEUES):
            echo.apply_async(queue="bench")
        single = SINGLE_ENQUEUES / (time.perf_counter() - started)
        started = time.perf_counter()
        echo.enqueue_many([{}] * JOBS, queue="bench")
        many = JOBS / (time.perf_counter() - started)
        self.reset()
        return single, many

    def latencies(self) -> list[float]:
        from jobs.models import Job
        from jobs.tasks import echo

        self.reset()
        self.start_workers()
        time.sleep(1.0)
        ids = []
        for _ in range(LATENCY_SAMPLES):
            job = echo.apply_async(queue="bench")
            ids.append(job.pk)
            while not Job.objects.filter(pk=job.pk, status="COMPLETED").exists():
                time.sleep(0.001)
            time.sleep(0.01)  # idle workers again
        self.stop_workers()
        jobs = Job.objects.filter(pk__in=ids)
        return [(job.started_at - job.created_at).total_seconds() * 1000 for job in jobs if job.started_at is not None]


def run_backend(url: str, latency: bool) -> dict[str, Any]:
    """One round on one database (a child process): drain, end to end, enqueue rates, and the
    pickup latencies when asked."""
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "helios_site.settings")
    sys.path.insert(0, str(BASE_DIR))
    import django

    django.setup()
    with tempfile.TemporaryDirectory(prefix="helios-bench-") as tmp:
        run = HeliosRun(url, Path(tmp))
        try:
            single, many = run.enqueue_rates()
            figures: dict[str, Any] = {
                "enqueue_single": single,
                "enqueue_many": many,
                "drain": run.drain(),
                "end_to_end": run.end_to_end(),
            }
            if latency:
                figures["latencies"] = run.latencies()
        finally:
            if run.workers:
                run.stop_workers()
    return figures


# -- the parent: databases, Celery, rounds taken in turn, the table ------------------------------


def run_child(argv: list[str], cwd: Path) -> dict[str, Any] | None:
    result = subprocess.run(argv, env=clean_env(HELIOS_GATEWAY_LOG_LEVEL="warning"), capture_output=True, cwd=cwd)
    if result.returncode != 0:
        print(result.stdout.decode()[-3000:] + result.stderr.decode()[-3000:])
        return None
    return dict(json.loads(result.stdout.decode().strip().splitlines()[-1]))


def migrated(url: str) -> bool:
    result = subprocess.run(
        [*MANAGE, "migrate", "--noinput"], env=clean_env(DATABASE_URL=url), capture_output=True, cwd=BASE_DIR
    )
    if result.returncode != 0:
        print(result.stdout.decode() + result.stderr.decode())
    return result.returncode == 0


class Helios:
    def __init__(self, url: str) -> None:
        self.url = url

    def round(self, latency: bool) -> dict[str, Any] | None:
        argv = [sys.executable, __file__, "--backend", self.url] + (["--latency"] if latency else [])
        return run_child(argv, BASE_DIR)


class CeleryOnRedis:
    def __init__(self, python: Path, redis_url: str) -> None:
        self.python = python
        self.redis_url = redis_url

    def round(self, latency: bool) -> dict[str, Any] | None:
        argv = [str(self.python), str(BASE_DIR / "bench" / "celery_bench.py"), "--redis", self.redis_url]
        return run_child(argv + (["--latency"] if latency else []), BASE_DIR / "bench")


def postgres_server() -> tuple[Any, str] | None:
    server = os.environ.get("HELIOS_BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")
    try:
        import psycopg

        return psycopg.connect(server, autocommit=True, connect_timeout=3), server
    except Exception as exc:  # no server, no PostgreSQL figures: say so
        print(f"PostgreSQL skipped: cannot connect to {server} ({exc})")
        return None


def celery_python(redis_url: str) -> Path | None:
    try:
        import redis

        redis.Redis.from_url(redis_url, socket_connect_timeout=3).ping()
    except Exception as exc:
        print(f"Celery skipped: no Redis at {redis_url} ({exc})")
        return None
    venv = BASE_DIR / "var" / "bench" / "celery-venv"
    python = venv / "bin" / "python"
    marker = venv / f".celery-{CELERY_VERSION}"
    if not marker.exists():
        print(f"creating a throwaway virtualenv for Celery {CELERY_VERSION} in {venv} ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        pip = subprocess.run(
            [
                str(python),
                "-m",
                "pip",
                "install",
                "-q",
                "--disable-pip-version-check",
                f"celery[redis]=={CELERY_VERSION}",
            ],
            capture_output=True,
        )
        if pip.returncode != 0:
            print(f"Celery skipped: cannot install it ({pip.stderr.decode()[-500:]})")
            return None
        marker.touch()
    return python


def summarize(rounds: list[dict[str, Any]]) -> dict[str, Any] | None:
    if not rounds:
        return None
    latencies: list[float] = next((r["latencies"] for r in rounds if "latencies" in r), [])
    summary: dict[str, Any] = {
        key: statistics.median(r[key] for r in rounds) if rounds[0].get(key) is not None else None
        for key in ("drain", "end_to_end", "enqueue_single", "enqueue_many")
    }
    summary["p50_ms"] = statistics.median(latencies) if latencies else None
    summary["p99_ms"] = statistics.quantiles(latencies, n=100)[98] if len(latencies) > 1 else None
    summary["rounds"] = {"drain": [r["drain"] for r in rounds], "end_to_end": [r["end_to_end"] for r in rounds]}
    return summary


def measure(rounds: int) -> dict[str, dict[str, Any] | None]:
    systems: dict[str, Any] = {}
    cleanup: list[Any] = []
    sqlite_dir = tempfile.TemporaryDirectory(prefix="helios-bench-sqlite-")
    cleanup.append(sqlite_dir.cleanup)
    sqlite_url = f"sqlite:///{sqlite_dir.name}/bench.sqlite3"
    if migrated(sqlite_url):
        systems["SQLite"] = Helios(sqlite_url)
    server = postgres_server()
    if server is not None:
        admin, server_url = server
        name = f"helios_bench_{uuid.uuid4().hex[:8]}"
        admin.execute(f'CREATE DATABASE "{name}"')
        cleanup.append(lambda: (admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'), admin.close()))
        url = server_url.rsplit("/", 1)[0] + "/" + name
        if migrated(url):
            systems["PostgreSQL"] = Helios(url)
    redis_url = os.environ.get("HELIOS_BENCH_REDIS_URL", "redis://127.0.0.1:6379/11")
    python = celery_python(redis_url)
    if python is not None:
        systems["Celery+Redis"] = CeleryOnRedis(python, redis_url)
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in ("SQLite", "PostgreSQL", "Celery+Redis")}
    try:
        # Rounds in turn (SQLite, PostgreSQL, Celery, SQLite, ...): the machine's other load, which
        # comes and goes, weighs on every system alike.
        for number in range(rounds):
            for name, system in systems.items():
                started = time.monotonic()
                figures = system.round(latency=number == rounds - 1)
                if figures is not None:
                    results[name].append(figures)
                took = time.monotonic() - started
                print(
                    f"  round {number + 1}/{rounds} {name}: {'done' if figures else 'FAILED'} in {took:.0f}s",
                    flush=True,
                )
    finally:
        for step in reversed(cleanup):
            step()
    return {name: summarize(values) for name, values in results.items()}


def show(figures: dict[str, dict[str, Any] | None]) -> None:
    rows = [
        ("drain, 10,000 waiting (jobs/s)", "drain", "{:,.0f}"),
        ("end to end, first enqueue to last run (jobs/s)", "end_to_end", "{:,.0f}"),
        ("enqueue one by one (jobs/s)", "enqueue_single", "{:,.0f}"),
        ("enqueue_many, 10,000 in one call (jobs/s)", "enqueue_many", "{:,.0f}"),
        ("pickup latency p50 (ms)", "p50_ms", "{:.2f}"),
        ("pickup latency p99 (ms)", "p99_ms", "{:.2f}"),
    ]
    names = ["SQLite", "PostgreSQL", "Celery+Redis"]
    celery = figures["Celery+Redis"]
    print()
    print(f"{'':48} {'SQLite':>12} {'PostgreSQL':>12} {'Celery+Redis':>13} {'PG/Celery':>10} {'SQLite/Celery':>14}")
    for label, key, fmt in rows:
        cells = []
        for name in names:
            value = (figures[name] or {}).get(key)
            cells.append(fmt.format(value) if value is not None else "n/a")
        ratios = []
        for name in ("PostgreSQL", "SQLite"):
            ours = (figures[name] or {}).get(key)
            theirs = (celery or {}).get(key)
            ratios.append(f"{ours / theirs:.2f}x" if ours and theirs else "n/a")
        print(f"{label:48} {cells[0]:>12} {cells[1]:>12} {cells[2]:>13} {ratios[0]:>10} {ratios[1]:>14}")
    postgres = figures["PostgreSQL"]
    if postgres and celery:
        drain_ratio = postgres["drain"] / celery["drain"]
        end_ratio = postgres["end_to_end"] / celery["end_to_end"]
        print()
        print("goals on PostgreSQL:")
        met = postgres["drain"] >= 1000 and drain_ratio >= 0.8
        drain = f"{postgres['drain']:,.0f} jobs/s, {drain_ratio:.2f}x"
        print(f"  drain >= 1,000 jobs/s and >= 0.8x Celery: {drain}: {verdict(met)}")
        print(f"  end to end >= 1x Celery (enqueue_many): {end_ratio:.2f}x: {verdict(end_ratio >= 1)}")
        print(f"  pickup p50 <= 6 ms: {postgres['p50_ms']:.2f} ms: {verdict(postgres['p50_ms'] <= 6)}")
    for name in names:
        figure = figures[name]
        if figure is not None:
            drains = ", ".join(f"{v:,.0f}" for v in figure["rounds"]["drain"])
            ends = ", ".join(f"{v:,.0f}" for v in figure["rounds"]["end_to_end"])
            print(f"{name} rounds: drain {drains} | end to end {ends}")


def verdict(met: bool) -> str:
    return "met" if met else "NOT met"


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--backend", help=argparse.SUPPRESS)
    parser.add_argument("--latency", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.backend:
        print(json.dumps(run_backend(args.backend, args.latency)))
        return
    print(
        f"HELIOS jobs benchmark: {JOBS:,} no-op jobs, {WORKERS} workers x concurrency {CONCURRENCY}, "
        f"medians of {args.rounds} rounds, on {os.cpu_count()} cores",
        flush=True,
    )
    show(measure(args.rounds))


if __name__ == "__main__":
    main()
