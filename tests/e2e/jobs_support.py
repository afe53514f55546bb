"""Support for the e2e tests of the job queue: real worker processes, the job tool, and a direct
reader of the scratch database (sqlite3 or psycopg, not Django: the test process's own Django
database is another one)."""

from __future__ import annotations

import json
import queue
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import requests

from tests.helpers import BASE_DIR, MANAGE, ManagedProcess, free_port

JOB_COLUMNS = (
    "id, task, queue, status, attempts, max_attempts, run_at, lease_expires_at, worker_id, last_error, result, "
    "created_at, started_at, finished_at"
)


def as_datetime(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    parsed = datetime.fromisoformat(str(value))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


class ScratchDB:
    """Reads (and, for set-up, writes) the database the worker processes use."""

    def __init__(self, url: str) -> None:
        self.sqlite = url.startswith("sqlite:///")
        if self.sqlite:
            self.conn: Any = sqlite3.connect(url.removeprefix("sqlite:///"), timeout=20, isolation_level=None)
        else:
            self.conn = psycopg.connect(url, autocommit=True)

    def close(self) -> None:
        self.conn.close()

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        if self.sqlite:
            sql = sql.replace("%s", "?")
        return list(self.conn.execute(sql, tuple(params)).fetchall())

    def stored_id(self, job_id: str) -> str:
        """How the jobs table stores this id (SQLite: 32 hex digits)."""
        return uuid.UUID(job_id).hex if self.sqlite else job_id

    def job(self, job_id: str) -> dict[str, Any]:
        found = self.rows(f"SELECT {JOB_COLUMNS} FROM jobs_job WHERE id = %s", [self.stored_id(job_id)])
        assert found, f"no job {job_id}"
        names = [name.strip() for name in JOB_COLUMNS.split(",")]
        job = dict(zip(names, found[0], strict=True))
        for name in ("run_at", "lease_expires_at", "created_at", "started_at", "finished_at"):
            job[name] = as_datetime(job[name])
        if self.sqlite and isinstance(job["result"], str):  # psycopg decodes jsonb itself
            job["result"] = json.loads(job["result"])
        return job

    def job_in(self, job_id: str, status: str) -> dict[str, Any] | None:
        """The job if it has this status, else None (for wait_until)."""
        job = self.job(job_id)
        return job if job["status"] == status else None

    def statuses(self, queue: str) -> dict[str, int]:
        return dict(self.rows("SELECT status, COUNT(*) FROM jobs_job WHERE queue = %s GROUP BY status", [queue]))

    def side_effects(self, job_id: str) -> list[tuple[int, str, float, str]]:
        """(attempt, worker, unix time, note) of every run of the job, in order."""
        return [
            (int(attempt), worker, float(at), note)
            for attempt, worker, at, note in self.rows(
                "SELECT attempt, worker, at, note FROM e2e_side_effects WHERE job_id = %s ORDER BY at", [job_id]
            )
        ]


def wait_until(
    check: Callable[[], Any], what: str, timeout: float = 30.0, processes: Sequence[ManagedProcess] = ()
) -> Any:
    """Poll `check` until it returns something truthy; fail with the workers' output otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            tails = "\n".join(f"--- {p.log_path.name}\n{p.output()[-3000:]}" for p in processes)
            raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{tails}")
        time.sleep(0.02)


def wait_for_answer(url: str, process: ManagedProcess, timeout: float = 60.0) -> requests.Response:
    """GET `url` until it answers. Unlike tests.helpers.wait_for_http it also retries a read
    timeout: a gunicorn that has bound its port but is still booting its workers on a loaded
    machine accepts the connection and answers late."""
    deadline = time.monotonic() + timeout
    while True:
        if process.process.poll() is not None:
            raise AssertionError(f"process exited with {process.process.returncode}:\n{process.output()[-4000:]}")
        try:
            return requests.get(url, timeout=5)
        except (requests.ConnectionError, requests.Timeout):
            if time.monotonic() > deadline:
                raise AssertionError(f"{url} did not answer within {timeout}s\n{process.output()[-4000:]}") from None
            time.sleep(0.1)


def run_tool(env: dict[str, str], *args: str, timeout: float = 60.0) -> list[str]:
    """Run tests.e2e.jobs_tool; returns the job ids it printed."""
    result = subprocess.run(
        [sys.executable, "-m", "tests.e2e.jobs_tool", *args],
        env=env,
        capture_output=True,
        cwd=BASE_DIR,
        timeout=timeout,
        check=False,
    )
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()
    lines = [line for line in result.stdout.decode().splitlines() if line.startswith("[")]
    return json.loads(lines[0]) if lines else []


class Driver:
    """A long-lived `jobs_tool serve` process: enqueues and retries with the real code, without
    paying Django's start-up for each request."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self._stderr = open(log_path, "w")  # noqa: SIM115 - closed in close()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.e2e.jobs_tool", "serve"],
            env=env,
            cwd=BASE_DIR,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            bufsize=1,
        )
        self._lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line)

    def send(self, **request: Any) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()

    def receive(self, timeout: float = 60.0) -> dict[str, Any]:
        try:
            reply: dict[str, Any] = json.loads(self._lines.get(timeout=timeout))
        except queue.Empty:
            raise AssertionError(f"the driver did not answer within {timeout}s") from None
        if "error" in reply:
            raise AssertionError(f"the driver failed: {reply['error']}")
        return reply

    def enqueue(self, task: str, payload: dict[str, Any] | None = None, **options: Any) -> list[str]:
        self.send(op="enqueue", task=task, payload=payload or {}, **options)
        ids: list[str] = self.receive()["ids"]
        return ids

    def retry(self, job_id: str) -> None:
        self.send(op="retry", id=job_id)
        self.receive()

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()
        self._stderr.close()


def start_tool(env: dict[str, str], log_path: Path, *args: str) -> ManagedProcess:
    return ManagedProcess([sys.executable, "-m", "tests.e2e.jobs_tool", *args], env, log_path)


class Workers:
    """Starts `manage.py runworker` processes on free metrics ports; stop_all() at teardown."""

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.env = env
        self.log_dir = log_dir
        self.started: list[ManagedProcess] = []
        self.metrics_ports: dict[str, int] = {}

    def start(
        self,
        worker_id: str,
        *args: str,
        queues: str,
        wait: bool = True,
        env: dict[str, str] | None = None,
    ) -> ManagedProcess:
        port = free_port()
        self.metrics_ports[worker_id] = port
        argv = [
            *MANAGE,
            "runworker",
            "--worker-id",
            worker_id,
            "--queues",
            queues,
            "--metrics-listen",
            f"127.0.0.1:{port}",
            *args,
        ]
        process_env = {**self.env, "PYTHONFAULTHANDLER": "1", **(env or {})}
        process = ManagedProcess(argv, process_env, self.log_dir / f"{worker_id}.log")
        self.started.append(process)
        if wait:
            self.wait_started(process)
        return process

    @staticmethod
    def wait_started(process: ManagedProcess) -> None:
        def started() -> bool:
            if process.process.poll() is not None:
                raise AssertionError(f"worker exited with {process.process.returncode}:\n{process.output()[-3000:]}")
            return '"worker_started"' in process.output()

        wait_until(started, "the worker to start", timeout=60, processes=[process])

    def stop_all(self) -> None:
        """SIGTERM every worker at once; one that does not stop within 10s is a bug: its threads'
        stacks are dumped into its log (faulthandler, on SIGABRT) and the teardown fails."""
        for process in self.started:
            process.signal(signal.SIGTERM)
        hung = []
        for process in self.started:
            try:
                process.process.wait(10)
            except subprocess.TimeoutExpired:
                process.signal(signal.SIGABRT)
                hung.append(process)
        for process in self.started:
            process.stop()
        if hung:
            raise AssertionError("\n".join(f"{p.log_path.name} ignored SIGTERM:\n{p.output()[-6000:]}" for p in hung))


def log_actions(process: ManagedProcess) -> list[dict[str, Any]]:
    """The worker's JSON log lines that carry an action."""
    lines = []
    for line in process.output().splitlines():
        if line.startswith("{"):
            record = json.loads(line)
            if record.get("extra", {}).get("action"):
                lines.append(record)
    return lines


def metric(text: str, name: str, **labels: str) -> float | None:
    """One sample from a Prometheus exposition, by name and exact labels."""
    for line in text.splitlines():
        match = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})? (\S+)$", line)
        if not match or match.group(1) != name:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', match.group(3) or ""))
        if found == labels:
            return float(match.group(4))
    return None
