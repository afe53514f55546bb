import pytest

from tests.helpers import MANAGE, ManagedProcess, base_env, free_port, migrate, scratch_database_url, wait_for_http


@pytest.fixture
def gateway_env(tmp_path):
    """Environment for a gateway process: its own var dir and a fresh, migrated database."""
    with scratch_database_url(tmp_path) as database_url:
        env = base_env(HELIOS_VAR_DIR=str(tmp_path / "var"), DATABASE_URL=database_url)
        migrate(env)
        yield env


@pytest.fixture
def start_gateway(gateway_env, tmp_path):
    """Start `manage.py rungateway` (gunicorn, uvicorn workers) on a free port; stopped at teardown."""
    started: list[ManagedProcess] = []

    def start(workers: int = 2, **env: str) -> tuple[str, ManagedProcess]:
        port = free_port()
        process = ManagedProcess(
            [*MANAGE, "rungateway", "--listen", f"127.0.0.1:{port}", "--workers", str(workers)],
            {**gateway_env, **env},
            tmp_path / f"gateway-{port}.log",
        )
        started.append(process)
        url = f"http://127.0.0.1:{port}"
        wait_for_http(f"{url}/healthz", process)
        return url, process

    yield start
    for process in started:
        process.stop()
