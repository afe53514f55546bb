"""The supervisor behind `make run`, with stand-in children and with the real stack."""

import os
import re
import signal
import sys
import textwrap
import time

import pytest
import requests

from tests.helpers import MANAGE, ManagedProcess, base_env, free_port, wait_for_http

pytestmark = pytest.mark.timeout(90)

SLEEPER = [sys.executable, "-c", "import time; time.sleep(120)"]
STUBBORN = [
    sys.executable,
    "-c",
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); time.sleep(120)",
]
FAILING = [sys.executable, "-c", "import sys; sys.exit(3)"]


@pytest.fixture
def start_supervisor(tmp_path):
    started: list[ManagedProcess] = []

    def start(specs: dict[str, list[str]], grace: float = 5.0) -> ManagedProcess:
        process = _supervisor_process(tmp_path, specs, grace)
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


def _supervisor_process(tmp_path, specs: dict[str, list[str]], grace: float) -> ManagedProcess:
    script = textwrap.dedent(
        f"""
        import logging, sys
        from helios_site.supervisor import ProcessSpec, Supervisor
        logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(message)s")
        specs = [ProcessSpec(name, argv) for name, argv in {specs!r}.items()]
        sys.exit(Supervisor(specs, grace_seconds={grace}, first_restart_delay=0.05).run())
        """
    )
    return ManagedProcess([sys.executable, "-c", script], base_env(), tmp_path / "supervisor.log")


def wait_for_output(process: ManagedProcess, pattern: str, count: int = 1, timeout: float = 15.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = re.findall(pattern, process.output())
        if len(found) >= count:
            return found
        time.sleep(0.05)
    raise AssertionError(f"{pattern!r} x{count} not in output:\n{process.output()}")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead for our purposes
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split(")")[-1].split()[0] != "Z"


def wait_dead(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_ctrl_c_stops_every_child(start_supervisor):
    supervisor = start_supervisor({"one": SLEEPER, "two": SLEEPER})
    pids = [int(pid) for pid in wait_for_output(supervisor, r"started \w+ \(pid (\d+)\)", count=2)]
    supervisor.signal(signal.SIGINT)
    assert supervisor.process.wait(15) == 0
    assert all(wait_dead(pid) for pid in pids)
    assert "received SIGINT, stopping" in supervisor.output()


def test_a_dead_child_is_reported_and_restarted(start_supervisor):
    supervisor = start_supervisor({"worker": SLEEPER})
    first = int(wait_for_output(supervisor, r"started worker \(pid (\d+)\)")[0])
    os.kill(first, signal.SIGKILL)
    wait_for_output(supervisor, rf"worker \(pid {first}\) exited with code -9; restarting")
    second = int(wait_for_output(supervisor, r"started worker \(pid (\d+)\)", count=2)[1])
    assert second != first
    assert alive(second)
    supervisor.stop()
    assert wait_dead(second)


def test_a_child_that_keeps_dying_stops_the_stack_with_an_error(start_supervisor):
    supervisor = start_supervisor({"broken": FAILING, "fine": SLEEPER})
    fine = int(wait_for_output(supervisor, r"started fine \(pid (\d+)\)")[0])
    assert supervisor.process.wait(30) == 1
    assert "broken exited with code 3 6 times within 60s: giving up" in supervisor.output()
    assert wait_dead(fine)


def test_a_second_ctrl_c_a_while_later_skips_the_grace_period(start_supervisor):
    supervisor = start_supervisor({"stubborn": STUBBORN}, grace=60.0)
    wait_for_output(supervisor, "ready")
    supervisor.signal(signal.SIGINT)
    time.sleep(1.5)
    supervisor.signal(signal.SIGINT)
    assert supervisor.process.wait(10) == 0
    assert "stubborn did not stop in time, killing it" in supervisor.output()


def test_a_child_that_ignores_sigterm_is_killed_after_the_grace_period(start_supervisor):
    supervisor = start_supervisor({"stubborn": STUBBORN}, grace=1.0)
    pid = int(wait_for_output(supervisor, r"started stubborn \(pid (\d+)\)")[0])
    wait_for_output(supervisor, "ready")
    supervisor.signal(signal.SIGTERM)
    assert supervisor.process.wait(15) == 0
    assert "stubborn did not stop in time, killing it" in supervisor.output()
    assert wait_dead(pid)


def test_children_die_with_a_killed_supervisor(start_supervisor):
    supervisor = start_supervisor({"orphan": SLEEPER})
    pid = int(wait_for_output(supervisor, r"started orphan \(pid (\d+)\)")[0])
    supervisor.signal(signal.SIGKILL)
    assert wait_dead(pid)


PASSWORD = "stack-password-that-is-long"


@pytest.mark.database
def test_runstack_serves_the_whole_stack_and_stops_it_on_ctrl_c(gateway_env, tmp_path):
    """ATLAS, the gateway, the proxy and a worker: a job enqueued through the proxy runs, and a
    Ctrl-C stops everything."""
    port, atlas_port, proxy_port, worker_metrics = free_port(), free_port(), free_port(), free_port()
    stack = ManagedProcess(
        [*MANAGE, "runstack", "--grace-seconds", "10"],
        {
            **gateway_env,
            "HELIOS_GATEWAY_LISTEN": f"127.0.0.1:{port}",
            "HELIOS_GATEWAY_WORKERS": "1",
            "HELIOS_ATLAS_LISTEN": f"127.0.0.1:{atlas_port}",
            "HELIOS_ATLAS_METRICS_LISTEN": f"127.0.0.1:{free_port()}",
            "HELIOS_ATLAS_DATA_DIR": str(tmp_path / "atlas"),
            "HELIOS_PROXY_LISTEN": f"127.0.0.1:{proxy_port}",
            "HELIOS_PROXY_METRICS_LISTEN": f"127.0.0.1:{free_port()}",
            "HELIOS_WORKER_METRICS_LISTEN": f"127.0.0.1:{worker_metrics}",
        },
        tmp_path / "stack.log",
    )
    try:
        assert wait_for_http(f"http://127.0.0.1:{port}/healthz", stack).status_code == 200
        assert f"admin http://127.0.0.1:{port}/admin/" in stack.output()
        ready = wait_for_http(f"http://127.0.0.1:{port}/readyz", stack)
        deadline = time.monotonic() + 30
        while ready.status_code != 200 and time.monotonic() < deadline:  # ATLAS may start after the gateway
            time.sleep(0.2)
            ready = wait_for_http(f"http://127.0.0.1:{port}/readyz", stack)
        assert ready.json()["checks"] == {"database": "ok", "atlas": "ok"}
        assert "worker_job_queue_depth" in wait_for_http(f"http://127.0.0.1:{worker_metrics}/metrics", stack).text

        api = f"http://127.0.0.1:{proxy_port}/api/v1"  # everything below goes through the proxy
        assert wait_for_http(f"http://127.0.0.1:{proxy_port}/healthz", stack).json() == {"status": "ok"}
        credentials = {"username": "dora", "password": PASSWORD}
        assert requests.post(f"{api}/auth/register", json=credentials, timeout=10).status_code == 201
        token = requests.post(f"{api}/auth/login", json=credentials, timeout=10).json()["token"]
        auth = {"Authorization": f"Bearer {token}"}
        created = requests.post(f"{api}/jobs", json={"payload": {"task": "echo", "hi": 1}}, headers=auth, timeout=10)
        assert created.status_code == 201, created.text
        deadline = time.monotonic() + 30
        while (job := requests.get(f"{api}/jobs/{created.json()['id']}", headers=auth, timeout=10).json())[
            "status"
        ] != "COMPLETED":
            assert time.monotonic() < deadline, (job, stack.output()[-3000:])
            time.sleep(0.1)
        assert job["result"] == {"hi": 1}
        assert job["worker_id"] == "worker-1"

        pids = {
            name: int(re.search(rf"started {name} \(pid (\d+)\)", stack.output()).group(1))
            for name in ("atlas", "gateway", "proxy", "worker")
        }
        # A terminal's Ctrl-C, delivered twice in a row as a wrapper such as timeout(1) does: still graceful.
        stack.signal(signal.SIGINT)
        stack.signal(signal.SIGINT)
        assert stack.process.wait(30) == 0
        for name, pid in pids.items():
            assert wait_dead(pid), name
            assert f"{name} stopped (code 0)" in stack.output()
        with pytest.raises(requests.ConnectionError):
            requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
    finally:
        stack.stop()
