"""`make run`'s stack with its worker: a job enqueued over the API runs, and Ctrl-C stops all."""

import re
import signal
import time

import pytest
import requests

from tests.e2e.jobs_support import wait_for_answer
from tests.helpers import MANAGE, ManagedProcess, free_port

pytestmark = [pytest.mark.database, pytest.mark.timeout(90)]

PASSWORD = "stack-password-that-is-long"


def test_the_stack_runs_a_worker_that_runs_jobs_enqueued_over_the_api(gateway_env, tmp_path):
    port, metrics_port = free_port(), free_port()
    env = {
        **gateway_env,
        "HELIOS_GATEWAY_LISTEN": f"127.0.0.1:{port}",
        "HELIOS_GATEWAY_WORKERS": "1",
        "HELIOS_WORKER_METRICS_LISTEN": f"127.0.0.1:{metrics_port}",
    }
    stack = ManagedProcess([*MANAGE, "runstack", "--grace-seconds", "10"], env, tmp_path / "stack.log")
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for_answer(f"{url}/healthz", stack)
        metrics = wait_for_answer(f"http://127.0.0.1:{metrics_port}/metrics", stack)
        assert "worker_job_queue_depth" in metrics.text
        api = f"{url}/api/v1"
        assert requests.post(f"{api}/auth/register", json={"username": "dora", "password": PASSWORD}, timeout=10).ok
        token = requests.post(f"{api}/auth/login", json={"username": "dora", "password": PASSWORD}, timeout=10).json()
        auth = {"Authorization": f"Bearer {token['token']}"}

        body = {"payload": {"task": "echo", "hello": "stack"}}
        created = requests.post(f"{api}/jobs", json=body, headers=auth, timeout=10)
        assert created.status_code == 201, created.text
        job_url = f"{api}/jobs/{created.json()['id']}"
        deadline = time.monotonic() + 20
        while (job := requests.get(job_url, headers=auth, timeout=10).json())["status"] != "COMPLETED":
            assert time.monotonic() < deadline, (job, stack.output()[-3000:])
            time.sleep(0.1)
        assert job["result"] == {"hello": "stack"}
        assert job["worker_id"] == "worker-1"
        assert job["attempts"] == 1

        assert re.search(r"started worker \(pid \d+\)", stack.output())
        stack.signal(signal.SIGINT)
        assert stack.process.wait(30) == 0
        assert "worker stopped (code 0)" in stack.output()
        assert "worker worker-1 stopped (exit code 0)" in stack.output()
    finally:
        stack.stop()
