"""runatlas as a process: redis-cli, Django's cache backend, hostile clients, limits, shutdown."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time

import pytest
import redis
import requests

from atlas.protocol import encode_command
from tests.e2e.atlas_processes import running_atlas
from tests.helpers import BASE_DIR, MANAGE, ManagedProcess, base_env, free_port

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def atlas(tmp_path_factory):
    with running_atlas(tmp_path_factory.mktemp("atlas")) as (port, process):
        yield port, process


def raw(port: int, payload: bytes, read_timeout: float = 5.0) -> tuple[bytes, bool]:
    """Send bytes, read until the server closes or goes quiet; (what came back, closed?)."""
    with socket.create_connection(("127.0.0.1", port), timeout=read_timeout) as sock:
        sock.sendall(payload)
        data = b""
        try:
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    return data, True
                data += chunk
        except TimeoutError:
            return data, False


@pytest.mark.skipif(shutil.which("redis-cli") is None, reason="redis-cli comes with redis-tools (.ci/run installs it)")
def test_redis_cli_works_unchanged(atlas):
    port, _ = atlas

    def cli(*args: str) -> str:
        result = subprocess.run(["redis-cli", "-p", str(port), *args], capture_output=True, text=True, timeout=20)
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    assert cli("PING") == "PONG"
    assert cli("SET", "cli-key", "hello world") == "OK"
    assert cli("GET", "cli-key") == "hello world"
    assert cli("--raw", "INCR", "cli-counter") == "1"
    assert "redis_version:7.0" in cli("INFO", "server")
    assert cli("-3", "HGETALL", "nothing") == ""
    piped = subprocess.run(
        ["redis-cli", "-p", str(port)], input="SET piped 1\nGET piped\n", capture_output=True, text=True, timeout=20
    )
    assert piped.stdout.split() == ["OK", "1"]


@pytest.mark.skipif(shutil.which("redis-cli") is None, reason="redis-cli comes with redis-tools (.ci/run installs it)")
def test_redis_cli_pipe_mass_insertion(atlas):
    port, _ = atlas
    data = b"".join(encode_command([b"SET", b"pipe:%d" % number, b"v"]) for number in range(20000))
    result = subprocess.run(["redis-cli", "-p", str(port), "--pipe"], input=data, capture_output=True, timeout=60)
    assert b"errors: 0, replies: 20000" in result.stdout, result.stdout + result.stderr
    assert redis.Redis(port=port).get("pipe:19999") == b"v"


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b"*2147483647\r\n", b"-ERR Protocol error: invalid multibulk length\r\n"),
        (b"*1\r\n$-5\r\n", b"-ERR Protocol error: invalid bulk length\r\n"),
        (b"*1\r\n$9999999999\r\n", b"-ERR Protocol error: invalid bulk length\r\n"),
        (b"*2\r\n$3\r\nGET\r\n:1\r\n", b"-ERR Protocol error: expected '$', got a non-bulk argument\r\n"),
        (b"\x00\xff\xfe*garbage\r\n", b"-ERR unknown command"),
        (b"*1\r\n\x01\x02\r\n", b"-ERR Protocol error: expected '$', got '\\x01'\r\n"),
    ],
)
def test_hostile_input_is_answered_and_the_connection_closed(atlas, payload, expected):
    port, _ = atlas
    reply, closed = raw(port, payload)
    assert reply.startswith(expected), reply
    if reply.startswith(b"-ERR Protocol"):
        assert closed
    assert redis.Redis(port=port).ping()  # and everyone else is fine


def test_a_huge_inline_line_is_refused(atlas):
    port, _ = atlas
    reply, closed = raw(port, b"x" * (100 * 1024))
    assert reply == b"-ERR Protocol error: too big inline request\r\n"
    assert closed


def test_a_client_that_never_reads_does_not_grow_the_server(atlas):
    """Pipeline 200 MB worth of replies without reading any: the server stops reading from this
    client instead of buffering its replies, and stays responsive for others."""
    port, process = atlas
    client = redis.Redis(port=port)
    client.set("blob", b"x" * (1024 * 1024))
    request = b"*2\r\n$3\r\nGET\r\n$4\r\nblob\r\n" * 200
    hog = socket.create_connection(("127.0.0.1", port))
    hog.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    hog.setblocking(False)
    try:
        sent = 0
        deadline = time.monotonic() + 5
        while sent < len(request) and time.monotonic() < deadline:
            try:
                sent += hog.send(request[sent:])
            except BlockingIOError:
                time.sleep(0.01)
        time.sleep(0.5)
        with open(f"/proc/{process.pid}/statm") as statm:
            rss = int(statm.read().split()[1]) * 4096
        assert rss < 150 * 1024 * 1024, f"server RSS grew to {rss >> 20} MB"
        assert client.ping()
        assert client.get("blob") == b"x" * (1024 * 1024)
    finally:
        hog.close()


def test_metrics_endpoint(atlas):
    port, process = atlas
    redis.Redis(port=port).set("metric-key", "v")
    body = requests.get(f"http://127.0.0.1:{process.metrics_port}/metrics", timeout=5).text
    assert 'atlas_store_keys{db="0"}' in body
    assert 'atlas_commands_total{cmd="set"}' in body
    assert "atlas_connected_clients" in body
    assert "atlas_memory_bytes" in body
    assert 'atlas_command_duration_seconds_count{cmd="set"}' in body
    assert requests.get(f"http://127.0.0.1:{process.metrics_port}/other", timeout=5).status_code == 404


def test_django_redis_cache_backend_works_against_atlas(atlas, tmp_path):
    port, _ = atlas
    script = (
        "from django.core.cache import caches\n"
        "from django.core.cache.backends.redis import RedisCache\n"
        "cache = caches['default']\n"
        "assert isinstance(cache, RedisCache), type(cache)\n"
        "cache.set('greeting', {'hello': 'world'}, timeout=30)\n"
        "assert cache.get('greeting') == {'hello': 'world'}\n"
        "cache.set_many({'a': 1, 'b': 2})\n"
        "assert cache.get_many(['a', 'b', 'c']) == {'a': 1, 'b': 2}\n"
        "assert cache.incr('a') == 2\n"
        "assert cache.add('a', 5) is False\n"
        "cache.delete_many(['a', 'b'])\n"
        "assert cache.get('a') is None\n"
        "assert cache.touch('greeting', 60)\n"
        "cache.clear()\n"
        "print('cache ok')\n"
    )
    result = subprocess.run(
        [*MANAGE, "shell", "-c", script],
        env=base_env(HELIOS_VAR_DIR=str(tmp_path), HELIOS_ATLAS_URL=f"redis://127.0.0.1:{port}/3"),
        capture_output=True,
        text=True,
        cwd=BASE_DIR,
        timeout=60,
    )
    assert "cache ok" in result.stdout, result.stdout + result.stderr


def test_the_cache_fails_open_when_atlas_is_down(tmp_path):
    script = (
        "from django.core.cache import cache\n"
        "cache.set('k', 'v')\n"
        "assert cache.get('k', 'fallback') == 'fallback'\n"
        "print('degraded ok')\n"
    )
    result = subprocess.run(
        [*MANAGE, "shell", "-c", script],
        env=base_env(
            HELIOS_VAR_DIR=str(tmp_path),
            HELIOS_ATLAS_URL=f"redis://127.0.0.1:{free_port()}/0",
            HELIOS_ATLAS_SOCKET_TIMEOUT="1s",
        ),
        capture_output=True,
        text=True,
        cwd=BASE_DIR,
        timeout=60,
    )
    assert "degraded ok" in result.stdout, result.stdout + result.stderr
    assert "cache_unavailable" in result.stdout


def test_requirepass_is_enforced(tmp_path):
    with running_atlas(tmp_path, "--requirepass", "s3cret") as (port, _):
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(port=port).get("k")
        assert redis.Redis(port=port, password="s3cret").set("k", "v")
        assert redis.Redis(port=port, password="s3cret", protocol=3).get("k") == b"v"


def test_protected_mode_refuses_to_listen_beyond_loopback_without_a_password(tmp_path):
    result = subprocess.run(
        [*MANAGE, "runatlas", "--listen", f"0.0.0.0:{free_port()}", "--metrics-listen", f"127.0.0.1:{free_port()}"],
        env=base_env(HELIOS_VAR_DIR=str(tmp_path)),
        capture_output=True,
        text=True,
        cwd=BASE_DIR,
        timeout=60,
    )
    assert result.returncode != 0
    assert "without a password" in result.stderr


def test_idle_clients_are_closed_after_the_timeout(tmp_path):
    with running_atlas(tmp_path, "--timeout", "1") as (port, _):
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        sock.sendall(b"PING\r\n")
        assert sock.recv(100) == b"+PONG\r\n"
        started = time.monotonic()
        assert sock.recv(100) == b""
        assert 0.5 < time.monotonic() - started < 5
        sock.close()


def test_maxclients_refuses_the_extra_client(tmp_path):
    with running_atlas(tmp_path, "--maxclients", "2") as (port, _):
        held = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(2)]
        try:
            time.sleep(0.3)
            with socket.create_connection(("127.0.0.1", port), timeout=10) as extra:
                assert extra.recv(100) == b"-ERR max number of clients reached\r\n"
                assert extra.recv(100) == b""
        finally:
            for sock in held:
                sock.close()


@pytest.mark.parametrize("how", ["sigterm", "shutdown"])
def test_clean_shutdown(tmp_path, how):
    port, metrics = free_port(), free_port()
    process = ManagedProcess(
        [*MANAGE, "runatlas", "--listen", f"127.0.0.1:{port}", "--metrics-listen", f"127.0.0.1:{metrics}"],
        base_env(HELIOS_VAR_DIR=str(tmp_path)),
        tmp_path / "atlas.log",
    )
    try:
        from tests.e2e.atlas_processes import wait_for_resp

        wait_for_resp(port, process)
        if how == "sigterm":
            process.signal(signal.SIGTERM)
        else:
            assert redis.Redis(port=port).shutdown(nosave=True) is None
        assert process.process.wait(20) == 0
        assert "ATLAS stopped" in process.output()
    finally:
        process.stop()
