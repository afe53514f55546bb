import subprocess

import pytest

from helios_site import config
from helios_site.config import ConfigError
from tests.helpers import BASE_DIR, MANAGE, base_env


@pytest.mark.parametrize(
    ("raw", "seconds"),
    [
        ("150ms", 0.15),
        ("5s", 5.0),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("7d", 604800.0),
        ("2.5s", 2.5),
        (30, 30.0),
        ("12", 12.0),
    ],
)
def test_durations_parse_to_seconds(raw, seconds):
    assert config.parse_duration(raw) == pytest.approx(seconds)


@pytest.mark.parametrize("raw", ["", "5 minutes", "-1s", "0s", "ms", True, "1w"])
def test_bad_durations_are_refused(raw):
    with pytest.raises(ValueError, match="duration"):
        config.parse_duration(raw)


@pytest.mark.parametrize(("raw", "size"), [("512mb", 512 * 1024**2), ("64k", 65536), ("1G", 1024**3), (100, 100)])
def test_sizes_parse_to_bytes(raw, size):
    assert config.parse_size(raw) == size


@pytest.mark.parametrize(
    ("raw", "address"),
    [("127.0.0.1:8443", ("127.0.0.1", 8443)), (":8080", ("127.0.0.1", 8080)), ("[::1]:6380", ("::1", 6380))],
)
def test_addresses_parse_to_host_and_port(raw, address):
    assert config.parse_address(raw) == address


@pytest.mark.parametrize("raw", ["8443", "host:", "host:http", "host:70000"])
def test_bad_addresses_are_refused(raw):
    with pytest.raises(ValueError, match="host:port"):
        config.parse_address(raw)


def write_yaml(tmp_path, text):
    path = tmp_path / "helios.yaml"
    path.write_text(text)
    return str(path)


def test_flag_beats_env_beats_yaml_beats_default(tmp_path):
    yaml_path = write_yaml(tmp_path, "gateway:\n  listen: 127.0.0.1:1111\n  workers: 3\n")
    env = {"HELIOS_CONFIG": yaml_path, "HELIOS_GATEWAY_LISTEN": "127.0.0.1:2222"}
    loaded = config.load(env)

    assert loaded.get("gateway.listen", flag="127.0.0.1:3333") == ("127.0.0.1", 3333)
    assert loaded.get("gateway.listen") == ("127.0.0.1", 2222)
    assert loaded.get("gateway.workers") == 3
    assert loaded.get("gateway.page_size") == 50
    assert loaded.source("gateway.listen") == "env HELIOS_GATEWAY_LISTEN"
    assert loaded.source("gateway.workers") == f"yaml {yaml_path}"
    assert loaded.source("gateway.page_size") == "default"


def test_nested_yaml_sections_map_to_dotted_settings(tmp_path):
    yaml_path = write_yaml(tmp_path, "gateway:\n  access_token_lifetime: 5m\n")
    assert config.load({"HELIOS_CONFIG": yaml_path}).get("gateway.access_token_lifetime") == 300.0


def test_a_bad_value_names_the_setting_and_its_source(tmp_path):
    yaml_path = write_yaml(tmp_path, "gateway:\n  workers: lots\n")
    with pytest.raises(ConfigError, match=r"gateway.workers in .*helios.yaml \(gateway.workers\): expected a positive"):
        config.load({"HELIOS_CONFIG": yaml_path}).get("gateway.workers")
    with pytest.raises(ConfigError, match=r"^HELIOS_GATEWAY_WORKERS \(gateway.workers\)"):
        config.load({"HELIOS_GATEWAY_WORKERS": "0"}).get("gateway.workers")
    with pytest.raises(ConfigError, match=r"^--workers \(gateway.workers\)"):
        config.load({}).get("gateway.workers", flag="-2", flag_name="--workers")


def test_unknown_yaml_keys_are_refused(tmp_path):
    yaml_path = write_yaml(tmp_path, "gateway:\n  lisen: 127.0.0.1:1\n")
    with pytest.raises(ConfigError, match=r"unknown setting gateway\.lisen"):
        config.load({"HELIOS_CONFIG": yaml_path})


def test_invalid_yaml_is_refused_with_its_line(tmp_path):
    yaml_path = write_yaml(tmp_path, "gateway:\n  listen: [unclosed\n")
    with pytest.raises(ConfigError, match="is not valid YAML at line"):
        config.load({"HELIOS_CONFIG": yaml_path})


def test_missing_config_file_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        config.load({"HELIOS_CONFIG": str(tmp_path / "absent.yaml")})


def test_example_config_loads_and_every_value_parses():
    loaded = config.load({"HELIOS_CONFIG": str(BASE_DIR / "configs" / "config.example.yaml")})
    assert loaded.yaml_values, "the example should set values"
    for path in loaded.yaml_values:
        loaded.get(path)


def run_manage(*args, **env):
    return subprocess.run([*MANAGE, *args], env=base_env(**env), capture_output=True, text=True, cwd=BASE_DIR)


def test_rungateway_takes_flag_over_env_over_yaml(tmp_path):
    yaml_path = write_yaml(tmp_path, "gateway:\n  listen: 127.0.0.1:1111\n  workers: 3\n")
    common = {"HELIOS_CONFIG": yaml_path, "HELIOS_VAR_DIR": str(tmp_path)}

    from_yaml = run_manage("rungateway", "--dry-run", **common)
    from_env = run_manage("rungateway", "--dry-run", HELIOS_GATEWAY_LISTEN="127.0.0.1:2222", **common)
    from_flag = run_manage(
        "rungateway", "--dry-run", "--listen", "127.0.0.1:3333", HELIOS_GATEWAY_LISTEN="127.0.0.1:2222", **common
    )

    assert "--bind 127.0.0.1:1111 --workers 3" in from_yaml.stdout, from_yaml.stderr
    assert "--bind 127.0.0.1:2222 --workers 3" in from_env.stdout, from_env.stderr
    assert "--bind 127.0.0.1:3333 --workers 3" in from_flag.stdout, from_flag.stderr


def test_a_bad_setting_stops_the_start_with_one_line(tmp_path):
    result = run_manage("check", HELIOS_VAR_DIR=str(tmp_path), HELIOS_GATEWAY_ACCESS_TOKEN_LIFETIME="soon")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "helios: configuration error: HELIOS_GATEWAY_ACCESS_TOKEN_LIFETIME (gateway.access_token_lifetime): "
        "expected a duration such as 5s or 150ms, got 'soon'"
    ]


def test_production_requires_a_secret_key(tmp_path):
    result = run_manage(
        "check", HELIOS_VAR_DIR=str(tmp_path), HELIOS_ENV="production", HELIOS_GATEWAY_ALLOWED_HOSTS="x"
    )
    assert result.returncode == 2
    assert "HELIOS_SECRET_KEY: required when HELIOS_ENV=production" in result.stderr


def test_development_secret_key_is_generated_once_and_kept(tmp_path):
    for _ in range(2):
        assert run_manage("check", HELIOS_VAR_DIR=str(tmp_path)).returncode == 0
    key_file = tmp_path / "secret_key"
    assert len(key_file.read_text()) >= 50
    assert key_file.stat().st_mode & 0o777 == 0o600
    first = key_file.read_text()
    run_manage("check", HELIOS_VAR_DIR=str(tmp_path))
    assert key_file.read_text() == first


def test_production_settings_pass_the_deploy_check(tmp_path):
    result = run_manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        HELIOS_VAR_DIR=str(tmp_path),
        HELIOS_ENV="production",
        HELIOS_SECRET_KEY="k" * 20 + "-production-like-secret-key-for-the-deploy-check-0123456789",
        HELIOS_GATEWAY_ALLOWED_HOSTS="helios.example.com",
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_debug_is_off_unless_asked(tmp_path):
    off = run_manage(
        "shell", "-c", "from django.conf import settings; print(settings.DEBUG)", HELIOS_VAR_DIR=str(tmp_path)
    )
    on = run_manage(
        "shell",
        "-c",
        "from django.conf import settings; print(settings.DEBUG)",
        HELIOS_VAR_DIR=str(tmp_path),
        HELIOS_DEBUG="1",
    )
    assert off.stdout.strip().splitlines()[-1] == "False"
    assert on.stdout.strip().splitlines()[-1] == "True"
