# ruff: noqa: PLW1510, PLW0603 - a command-line benchmark: it prints, and runs its own commands
"""Celery on Redis doing what bench/bench_jobs.py asks of HELIOS; run by it, in a throwaway
virtualenv with Celery installed. Prints one JSON line of figures.

Two prefork workers x concurrency 4 (Celery's defaults otherwise: prefetch multiplier 4, early
acks, results ignored). Each no-op task makes one Redis round trip (a pipeline) to record that it
ran and when, which is how the driver knows the first start and the last finish.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

import redis
from celery import Celery

QUEUE = os.environ.get("HELIOS_BENCH_QUEUE", "helios-bench")
REDIS_URL = os.environ.get("HELIOS_BENCH_REDIS_URL", "redis://127.0.0.1:6379/11")
PREFIX = f"{QUEUE}:"
JOBS = 10_000
SINGLE_ENQUEUES = 1_000
LATENCY_SAMPLES = 200
WORKERS = 2
CONCURRENCY = 4

app = Celery("celery_bench", broker=REDIS_URL)
app.conf.update(
    task_default_queue=QUEUE,
    task_ignore_result=True,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)
_store: redis.Redis | None = None


def store() -> redis.Redis:
    global _store
    if _store is None:
        _store = redis.Redis.from_url(REDIS_URL)
    return _store


@app.task(name="noop")  # type: ignore[untyped-decorator]
def noop(sent_at: float | None = None) -> None:
    now = time.time()
    pipe = store().pipeline(transaction=False)
    pipe.incr(PREFIX + "done")
    pipe.set(PREFIX + "first", now, nx=True)
    pipe.set(PREFIX + "last", now)
    if sent_at is not None:
        pipe.rpush(PREFIX + "latency", now - sent_at)
    pipe.execute()


class Run:
    def __init__(self, log_dir: str) -> None:
        self.log_dir = log_dir
        self.workers: list[subprocess.Popen[bytes]] = []

    def reset(self) -> None:
        keys = [PREFIX + name for name in ("done", "first", "last", "latency")]
        store().delete(*keys, QUEUE)

    def start_workers(self) -> None:
        env = {**os.environ, "HELIOS_BENCH_QUEUE": QUEUE, "HELIOS_BENCH_REDIS_URL": REDIS_URL}
        for i in range(WORKERS):
            log = open(os.path.join(self.log_dir, f"celery-{i}.log"), "ab")  # noqa: SIM115
            argv = [sys.executable, "-m", "celery", "-A", "celery_bench", "worker", "--pool", "prefork"]
            argv += ["--concurrency", str(CONCURRENCY), "-Q", QUEUE, "-n", f"bench{i}-{os.getpid()}@%h"]
            argv += ["--without-gossip", "--without-mingle", "--without-heartbeat", "--loglevel", "WARNING"]
            self.workers.append(subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT))
            log.close()

    def wait_ready(self) -> None:
        """Until both workers answer a ping: started, pool forked, consuming."""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            replies = app.control.ping(timeout=0.5) or []
            if len(replies) >= WORKERS:
                return
        raise SystemExit("celery workers did not start")

    def stop_workers(self) -> None:
        for worker in self.workers:
            worker.send_signal(signal.SIGTERM)
        for worker in self.workers:
            worker.wait(60)
        self.workers = []

    def wait_done(self, count: int) -> None:
        deadline = time.monotonic() + 300
        while int(store().get(PREFIX + "done") or 0) < count:
            if time.monotonic() > deadline:
                raise SystemExit("celery did not finish in time")
            time.sleep(0.05)

    @staticmethod
    def stamp(name: str) -> float:
        value = store().get(PREFIX + name)
        assert value is not None, f"no {name} time recorded"
        return float(value)

    def drain(self) -> float:
        self.reset()
        for _ in range(JOBS):
            noop.apply_async()
        self.start_workers()
        self.wait_done(JOBS)
        first, last = self.stamp("first"), self.stamp("last")
        self.stop_workers()
        return JOBS / (last - first)

    def end_to_end(self) -> float:
        self.reset()
        self.start_workers()
        self.wait_ready()
        started = time.time()
        for _ in range(JOBS):
            noop.apply_async()
        self.wait_done(JOBS)
        last = self.stamp("last")
        self.stop_workers()
        return JOBS / (last - started)

    def enqueue_rate(self) -> float:
        self.reset()
        started = time.perf_counter()
        for _ in range(SINGLE_ENQUEUES):
            noop.apply_async()
        rate = SINGLE_ENQUEUES / (time.perf_counter() - started)
        self.reset()
        return rate

    def latencies(self) -> list[float]:
        self.reset()
        self.start_workers()
        self.wait_ready()
        time.sleep(1.0)
        for i in range(LATENCY_SAMPLES):
            noop.apply_async(kwargs={"sent_at": time.time()})
            while store().llen(PREFIX + "latency") <= i:
                time.sleep(0.001)
            time.sleep(0.01)
        values = [float(v) * 1000 for v in store().lrange(PREFIX + "latency", 0, -1)]
        self.stop_workers()
        return values


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--redis", default=REDIS_URL)
    parser.add_argument("--latency", action="store_true", help="also measure the pickup latency")
    args = parser.parse_args()
    if args.redis != REDIS_URL or "HELIOS_BENCH_QUEUE" not in os.environ:
        # Re-run with the settings in the environment, so that the worker processes share them.
        queue = f"helios-bench-{os.getpid()}"
        env = {**os.environ, "HELIOS_BENCH_REDIS_URL": args.redis, "HELIOS_BENCH_QUEUE": queue}
        argv = [sys.executable, __file__] + (["--latency"] if args.latency else [])
        sys.exit(subprocess.run(argv, env=env).returncode)
    with tempfile.TemporaryDirectory(prefix="helios-bench-celery-") as tmp:
        run = Run(tmp)
        try:
            figures: dict[str, object] = {
                "enqueue_single": run.enqueue_rate(),
                "enqueue_many": None,
                "drain": run.drain(),
                "end_to_end": run.end_to_end(),
            }
            if args.latency:
                figures["latencies"] = run.latencies()
        finally:
            if run.workers:
                run.stop_workers()
            run.reset()
            store().delete(f"_kombu.binding.{QUEUE}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
