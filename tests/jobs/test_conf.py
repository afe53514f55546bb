import socket

import pytest
from django.core.management import CommandError, call_command

from helios_site import config
from helios_site.config import ConfigError
from jobs.conf import worker_settings


def test_flags_beat_environment_beat_defaults():
    env = config.load({"HELIOS_WORKER_CONCURRENCY": "8", "HELIOS_WORKER_QUEUES": "a,b", "HELIOS_WORKER_LEASE": "1m"})
    settings = worker_settings(env, worker_id="w-1", concurrency="2", poll_interval="250ms")
    assert (settings.worker_id, settings.concurrency, settings.queues) == ("w-1", 2, ("a", "b"))
    assert (settings.poll_interval, settings.lease, settings.heartbeat_interval) == (0.25, 60.0, 20.0)
    assert (settings.metrics_host, settings.metrics_port, settings.prefetch) == ("127.0.0.1", 9092, 4)
    assert worker_settings(config.load({})).worker_id.endswith(f"-{__import__('os').getpid()}")


def test_worker_settings_come_from_the_yaml_file(tmp_path):
    path = tmp_path / "helios.yaml"
    path.write_text("worker:\n  poll_interval: 2s\n  max_attempts: 7\n  queues: [mail]\n")
    loaded = config.load({"HELIOS_CONFIG": str(path)})
    assert worker_settings(loaded).poll_interval == 2.0
    assert worker_settings(loaded).queues == ("mail",)
    assert loaded.get("worker.max_attempts") == 7


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({"concurrency": "0"}, "--concurrency .*positive integer"),
        ({"poll_interval": "soon"}, "--poll-interval .*duration"),
        ({"queues": "ok,not ok"}, "'not ok' is not a queue name"),
        ({"worker_id": "has space"}, "--worker-id"),
        ({"lease": "100ms"}, "at least 0.5s"),
        ({"prefetch": "-1"}, "--prefetch .*>= 0"),
        ({"metrics_listen": "nowhere"}, "--metrics-listen .*host:port"),
    ],
)
def test_bad_worker_settings_name_the_flag(flags, message):
    with pytest.raises(ConfigError, match=message):
        worker_settings(config.load({}), **flags)


def test_runworker_refuses_bad_flags_with_one_line():
    with pytest.raises(CommandError, match=r"--concurrency \(worker.concurrency\): expected a positive integer"):
        call_command("runworker", "--concurrency", "none")


def test_runworker_refuses_a_metrics_address_in_use():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(CommandError, match=f"cannot serve metrics on 127.0.0.1:{port}: Address already in use"):
            call_command("runworker", "--metrics-listen", f"127.0.0.1:{port}")
