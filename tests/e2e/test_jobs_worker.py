"""The job queue with real worker processes on one database (SQLite here; PostgreSQL in the
PostgreSQL pass): exactly-once completion, crashes, retries with backoff, the dead-letter queue,
graceful shutdown, idempotency, scheduled jobs and timeouts.

The workers share one migrated scratch database per module; each test uses queues of its own.
Tasks come from tests.e2e.jobs_tasks and write every run to a side-effect table.
"""

from __future__ import annotations

import signal
import subprocess
import time

import pytest
import requests

from tests.e2e.jobs_support import (
    Driver,
    ScratchDB,
    Workers,
    log_actions,
    metric,
    run_tool,
    start_tool,
    wait_until,
)
from tests.helpers import BASE_DIR, MANAGE, base_env, migrate, scratch_database_url

pytestmark = [pytest.mark.database, pytest.mark.timeout(120)]

TASKS_MODULE = "tests.e2e.jobs_tasks"


@pytest.fixture(scope="module")
def jobs_env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("jobs-e2e")
    with scratch_database_url(tmp) as url:
        env = base_env(HELIOS_VAR_DIR=str(tmp / "var"), DATABASE_URL=url, HELIOS_WORKER_IMPORTS=TASKS_MODULE)
        migrate(env)
        run_tool(env, "setup")
        yield env


@pytest.fixture(scope="module")
def scratch(jobs_env):
    reader = ScratchDB(jobs_env["DATABASE_URL"])
    yield reader
    reader.close()


@pytest.fixture(scope="module")
def driver(jobs_env, tmp_path_factory):
    started = Driver(jobs_env, tmp_path_factory.mktemp("driver") / "driver.log")
    yield started
    started.close()


@pytest.fixture(scope="module")
def shared_worker(jobs_env, tmp_path_factory):
    """One worker for the tests that need nothing special of it. Its poll interval is longer than
    any of them: what it does in time, it does because it was woken (new work, a retry falling due)."""
    started = Workers(jobs_env, tmp_path_factory.mktemp("shared"))
    process = started.start("shared", "--poll-interval", "60s", queues="flaky,dead,timeouts,commit")
    yield started, process
    started.stop_all()


@pytest.fixture
def workers(jobs_env, tmp_path):
    started = Workers(jobs_env, tmp_path)
    yield started
    started.stop_all()


def test_four_workers_complete_each_of_2000_jobs_exactly_once(driver, scratch, workers):
    processes = [workers.start(f"w{i}", "--concurrency", "4", queues="exact", wait=False) for i in range(4)]
    for process in processes:
        workers.wait_started(process)
    ids = driver.enqueue("e2e.record", queue="exact", count=2000, many=True)
    assert len(set(ids)) == 2000

    wait_until(
        lambda: scratch.statuses("exact").get("COMPLETED") == 2000,
        "2000 COMPLETED jobs",
        timeout=90,
        processes=processes,
    )
    assert scratch.statuses("exact") == {"COMPLETED": 2000}
    runs_of = dict(scratch.rows("SELECT job_id, COUNT(*) FROM e2e_side_effects WHERE note = 'ran' GROUP BY job_id"))
    assert [runs_of.get(job_id, 0) for job_id in ids] == [1] * 2000, "a job ran twice or never"
    assert scratch.rows("SELECT attempts, COUNT(*) FROM jobs_job WHERE queue = 'exact' GROUP BY attempts") == [
        (1, 2000)
    ]
    per_worker = dict(scratch.rows("SELECT worker_id, COUNT(*) FROM jobs_job WHERE queue = 'exact' GROUP BY worker_id"))
    assert set(per_worker) == {"w0", "w1", "w2", "w3"}, per_worker
    # Each job's recorded worker is the one whose task run wrote the side effect.
    mismatched = [
        job_id
        for job_id, worker in scratch.rows("SELECT job_id, worker FROM e2e_side_effects WHERE note = 'ran'")
        if job_id in runs_of and worker not in per_worker
    ]
    assert mismatched == []


def test_a_killed_worker_s_job_runs_again_after_its_lease_expires(driver, scratch, workers):
    doomed = workers.start("doomed", "--lease", "2s", queues="crash")
    (job_id,) = driver.enqueue("e2e.slow", {"seconds": 2}, queue="crash")
    wait_until(lambda: scratch.side_effects(job_id), "the job to start", processes=[doomed])
    doomed.signal(signal.SIGKILL)
    doomed.process.wait(10)
    assert scratch.job(job_id)["status"] == "RUNNING"  # nobody completed it

    rescuer = workers.start("rescuer", "--lease", "2s", queues="crash")
    job = wait_until(lambda: scratch.job_in(job_id, "COMPLETED"), "the job to complete", processes=[rescuer])
    assert job["attempts"] == 2
    assert job["worker_id"] == "rescuer"
    assert "lease expired: worker doomed held attempt 1 of 3" in job["last_error"]
    runs = scratch.side_effects(job_id)
    assert [(attempt, worker, note) for attempt, worker, _, note in runs] == [
        (1, "doomed", "start"),
        (2, "rescuer", "start"),
        (2, "rescuer", "done"),
    ]
    assert any(line["extra"]["action"] == "lease_expired" for line in log_actions(rescuer))


def test_a_task_failing_twice_completes_on_attempt_3_after_visible_backoff(driver, scratch, shared_worker):
    _, worker = shared_worker
    (job_id,) = driver.enqueue("e2e.flaky", {"fail_times": 2}, queue="flaky")
    seen_pending: dict[int, object] = {}  # attempts -> run_at while waiting for the retry

    def completed():
        job = scratch.job(job_id)
        if job["status"] == "PENDING" and job["attempts"] > 0:
            seen_pending.setdefault(job["attempts"], job["run_at"])
        return job["status"] == "COMPLETED" and job

    job = wait_until(completed, "the third attempt to succeed", timeout=30, processes=[worker])
    assert job["attempts"] == 3
    assert job["result"] == "succeeded on attempt 3"
    assert "RuntimeError: failing on purpose on attempt 2" in job["last_error"]
    runs = scratch.side_effects(job_id)
    assert [attempt for attempt, *_ in runs] == [1, 2, 3]
    times = [at for _, _, at, _ in runs]
    # retry_backoff=1.0 with equal jitter: the first wait is 0.5-1s, the second 1-2s.
    assert 0.5 <= times[1] - times[0] <= 1.0 + 0.5, times
    assert 1.0 <= times[2] - times[1] <= 2.0 + 0.5, times
    # The backoff is in run_at: each retry was scheduled that far after the failed run.
    assert set(seen_pending) == {1, 2}, seen_pending
    # (plus the moment between the failed run and the worker's round that records it)
    assert 0.5 <= seen_pending[1].timestamp() - times[0] <= 1.0 + 0.5
    assert 1.0 <= seen_pending[2].timestamp() - times[1] <= 2.0 + 0.5
    assert job["run_at"] == seen_pending[2]
    assert job["started_at"] >= job["run_at"]


def test_an_always_failing_job_goes_dead_with_its_traceback_and_retry_revives_it(
    driver, scratch, shared_worker, tmp_path
):
    workers, worker = shared_worker
    marker = tmp_path / "ready"
    (job_id,) = driver.enqueue("e2e.fails_until_file", {"path": str(marker)}, queue="dead")
    job = wait_until(lambda: scratch.job_in(job_id, "DEAD"), "DEAD", processes=[worker])
    assert job["attempts"] == job["max_attempts"] == 3
    assert job["finished_at"] is not None
    assert job["last_error"].startswith("Traceback (most recent call last):")
    assert "in fails_until_file" in job["last_error"]
    assert f"FileNotFoundError: {marker} is not there yet" in job["last_error"]
    assert len(scratch.side_effects(job_id)) == 3

    marker.write_text("now")
    driver.retry(job_id)
    job = wait_until(lambda: scratch.job_in(job_id, "COMPLETED"), "the retry", processes=[worker])
    assert job["attempts"] == 1  # retried from the first attempt
    assert job["result"] == "found"
    assert len(scratch.side_effects(job_id)) == 4

    scrape = requests.get(f"http://127.0.0.1:{workers.metrics_ports['shared']}/metrics", timeout=5).text
    assert metric(scrape, "jobs_processed_total", task="e2e.fails_until_file", outcome="retried") == 2
    assert metric(scrape, "jobs_processed_total", task="e2e.fails_until_file", outcome="dead") == 1
    assert metric(scrape, "jobs_processed_total", task="e2e.fails_until_file", outcome="completed") == 1
    assert metric(scrape, "job_duration_seconds_count", task="e2e.fails_until_file") == 4
    assert metric(scrape, "job_pickup_latency_seconds_count") >= 4


def test_sigterm_finishes_running_jobs_and_returns_prefetched_ones(driver, scratch, workers):
    worker = workers.start("graceful", "--concurrency", "2", "--prefetch", "2", "--grace", "10s", queues="term")
    ids = driver.enqueue("e2e.slow", {"seconds": 1.5}, queue="term", count=4, many=True)
    wait_until(lambda: scratch.statuses("term").get("RUNNING") == 4, "4 claimed", processes=[worker])
    started = "SELECT COUNT(*) FROM e2e_side_effects WHERE note = 'start' AND worker = 'graceful'"
    wait_until(lambda: scratch.rows(started) == [(2,)], "2 started", processes=[worker])
    stopped_at = time.monotonic()
    worker.signal(signal.SIGTERM)
    assert worker.process.wait(15) == 0, worker.output()[-3000:]
    assert time.monotonic() - stopped_at < 5

    jobs = [scratch.job(job_id) for job_id in ids]
    done = [job for job in jobs if job["status"] == "COMPLETED"]
    returned = [job for job in jobs if job["status"] == "PENDING"]
    assert len(done) == 2, [(job["status"], job["attempts"]) for job in jobs]
    assert len(returned) == 2
    assert all(job["attempts"] == 1 for job in done)
    # Never started: the claim is undone, as if this worker had not taken them.
    assert all(job["attempts"] == 0 and job["started_at"] is None for job in returned)
    for job_id, job in zip(ids, jobs, strict=True):
        notes = [note for *_, note in scratch.side_effects(job_id)]
        assert notes == (["start", "done"] if job["status"] == "COMPLETED" else [])
    assert any(line["extra"]["action"] == "jobs_released" for line in log_actions(worker))


def test_sigterm_releases_a_job_that_outlasts_the_grace_period(driver, scratch, workers):
    worker = workers.start("impatient", "--grace", "1s", queues="outlast")
    (job_id,) = driver.enqueue("e2e.slow", {"seconds": 30}, queue="outlast")
    wait_until(lambda: scratch.side_effects(job_id), "the job to start", processes=[worker])
    worker.signal(signal.SIGTERM)
    assert worker.process.wait(10) == 0, worker.output()[-3000:]
    job = scratch.job(job_id)
    assert job["status"] == "PENDING"
    assert job["attempts"] == 1  # it ran for a while: the attempt counts
    assert "released at shutdown: worker impatient held attempt 1 of 3" in job["last_error"]
    assert job["lease_expires_at"] is None


def test_one_idempotency_key_makes_one_job_across_concurrent_processes(jobs_env, scratch, tmp_path):
    args = ["enqueue", "--task", "e2e.record", "--queue", "idem", "--idempotency-key", "order-42"]
    tools = [start_tool(jobs_env, tmp_path / f"tool-{i}.log", *args) for i in range(4)]
    try:
        for tool in tools:
            assert tool.process.wait(60) == 0, tool.output()
    finally:
        for tool in tools:
            tool.stop()
    printed = {tool.output().strip().splitlines()[-1] for tool in tools}
    assert len(printed) == 1, printed
    assert scratch.rows("SELECT COUNT(*) FROM jobs_job WHERE queue = 'idem'") == [(1,)]


def test_a_job_scheduled_beyond_the_lease_and_a_task_longer_than_it_run_once(driver, scratch, workers):
    pair = [workers.start(f"lease-{i}", "--lease", "1s", queues="eta", wait=False) for i in range(2)]
    for process in pair:
        workers.wait_started(process)
    (later,) = driver.enqueue("e2e.record", queue="eta", countdown=2.5)
    (long,) = driver.enqueue("e2e.slow", {"seconds": 2.5}, queue="eta")
    wait_until(lambda: scratch.statuses("eta").get("COMPLETED") == 2, "both jobs", timeout=30, processes=pair)
    time.sleep(1.0)  # a lease more: a second run would show now

    scheduled = scratch.job(later)
    assert scheduled["attempts"] == 1
    assert scheduled["started_at"] >= scheduled["run_at"] >= scheduled["created_at"]
    assert (scheduled["run_at"] - scheduled["created_at"]).total_seconds() >= 2.4
    assert [note for *_, note in scratch.side_effects(later)] == ["ran"]
    slow = scratch.job(long)
    assert slow["attempts"] == 1, "the heartbeat kept the lease"
    assert [note for *_, note in scratch.side_effects(long)] == ["start", "done"]
    for process in pair:
        assert not any(line["extra"]["action"] in ("lease_expired", "lease_lost") for line in log_actions(process))


def test_timeouts_stop_python_and_async_tasks_and_count_as_failures(driver, scratch, shared_worker):
    _, worker = shared_worker
    (busy,) = driver.enqueue("e2e.busy_loop", {"seconds": 30}, queue="timeouts")
    (hang,) = driver.enqueue("e2e.async_hang", {"seconds": 30}, queue="timeouts")
    wait_until(lambda: scratch.statuses("timeouts").get("DEAD") == 2, "both DEAD", timeout=20, processes=[worker])
    busy_job, hang_job = scratch.job(busy), scratch.job(hang)
    assert busy_job["attempts"] == 2
    assert "JobTimeout: task e2e.busy_loop ran past its timeout of 1s" in busy_job["last_error"]
    assert (busy_job["finished_at"] - busy_job["started_at"]).total_seconds() < 3
    assert hang_job["attempts"] == 1
    assert "JobTimeout: task e2e.async_hang ran past its timeout of 1s" in hang_job["last_error"]
    assert worker.process.poll() is None, "the worker goes on"
    (after,) = driver.enqueue("e2e.record", queue="timeouts")
    wait_until(lambda: scratch.job(after)["status"] == "COMPLETED", "a job after the timeouts", processes=[worker])


def test_a_task_stuck_in_c_past_its_timeout_makes_the_worker_restart(driver, scratch, workers):
    worker = workers.start("stuck", queues="stuck")
    (job_id,) = driver.enqueue("e2e.stuck_in_c", {"seconds": 30}, queue="stuck")
    assert worker.process.wait(20) == 3, worker.output()[-3000:]
    job = scratch.job(job_id)
    assert job["status"] == "PENDING", "retried by the next worker"
    assert job["attempts"] == 1
    assert "could not be interrupted" in job["last_error"]
    assert any(line["extra"]["action"] == "job_stuck" for line in log_actions(worker))


def test_a_job_enqueued_in_an_open_transaction_runs_when_it_commits(driver, scratch, shared_worker):
    # The shared worker polls every 60s: only the wake-up (NOTIFY, or SQLite's change watcher)
    # can make it run the job in time.
    _, worker = shared_worker
    driver.send(op="enqueue", task="e2e.record", queue="commit", hold=1.5)
    (job_id,) = driver.receive()["ids"]
    time.sleep(0.75)
    assert scratch.rows("SELECT COUNT(*) FROM jobs_job WHERE queue = 'commit'") == [(0,)], "seen before the commit"
    assert driver.receive(timeout=10) == {"committed": True}
    committed_at = time.time()
    wait_until(lambda: scratch.side_effects(job_id), "the job to run after the commit", timeout=5, processes=[worker])
    (_, _, ran_at, _) = scratch.side_effects(job_id)[0]
    assert ran_at - committed_at < 2.0  # woken, not polled: the next poll is a minute away


@pytest.mark.postgres
def test_the_worker_listens_again_after_its_listen_connection_is_killed(driver, scratch, workers):
    worker = workers.start("relisten", "--poll-interval", "60s", queues="relisten")
    wait_until(lambda: "listen_started" in worker.output(), "LISTEN", processes=[worker])
    # Only this test's database: other runs on the same server listen too.
    listeners = "query LIKE 'LISTEN helios_jobs%%' AND datname = current_database()"
    scratch.rows(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE {listeners}")
    relistened = lambda: worker.output().count('"listen_started"') == 2  # noqa: E731
    wait_until(relistened, "a second LISTEN", timeout=15, processes=[worker])
    (job_id,) = driver.enqueue("e2e.record", queue="relisten")
    wait_until(lambda: scratch.side_effects(job_id), "the job", timeout=5, processes=[worker])
    assert '"listen_lost"' in worker.output()


def test_runworker_is_the_jobs_command_not_channels():
    result = subprocess.run([*MANAGE, "runworker", "--help"], env=base_env(), capture_output=True, cwd=BASE_DIR)
    assert result.returncode == 0, result.stderr.decode()
    help_text = result.stdout.decode()
    for flag in ("--worker-id", "--queues", "--concurrency", "--poll-interval", "--lease", "--metrics-listen"):
        assert flag in help_text
    assert "Channels" not in help_text  # channels' runworker: "Runs a Channels worker", positional channels


def test_a_duplicate_task_name_stops_the_worker_at_start(tmp_path):
    env = base_env(HELIOS_VAR_DIR=str(tmp_path), HELIOS_WORKER_IMPORTS=f"{TASKS_MODULE},tests.e2e.jobs_duplicate_tasks")
    result = subprocess.run([*MANAGE, "runworker"], env=env, capture_output=True, cwd=BASE_DIR, timeout=60)
    assert result.returncode != 0
    assert "TaskAlreadyRegistered: task name 'echo' is taken by jobs.tasks.echo" in result.stderr.decode()
    assert "tests.e2e.jobs_duplicate_tasks.another_echo cannot use it too" in result.stderr.decode()


def test_the_driver_reports_failures_instead_of_hiding_them(driver):
    with pytest.raises(AssertionError, match=r"unknown task 'e2e\.nope'"):
        driver.enqueue("e2e.nope")
