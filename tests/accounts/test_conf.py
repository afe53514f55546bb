"""The gateway's settings objects: rate limits, KV limits and the ATLAS client, from env and YAML."""

from __future__ import annotations

import pytest

from accounts.conf import RateLimitSettings, RatePolicy
from atlas.client import AtlasNotConfigured, ClientOptions
from atlas.conf import KVSettings
from helios_site.config import ConfigError, load


def test_rate_limit_defaults_and_overrides_from_yaml_and_env(tmp_path):
    yaml_path = tmp_path / "helios.yaml"
    yaml_path.write_text(
        "gateway:\n  rate_limit:\n    default_capacity: 7\n    default_rate_num: 3\n    fail_mode: closed\n"
        "atlas:\n  url: redis://127.0.0.1:6380/0\n"
    )
    config = load({"HELIOS_CONFIG": str(yaml_path), "HELIOS_GATEWAY_RATE_LIMIT_DEFAULT_RATE_DEN": "60"})
    settings = RateLimitSettings.from_config(config)
    assert settings.default_policy == RatePolicy(capacity=7, rate_num=3, rate_den=60)
    assert settings.fail_open is False
    assert settings.enabled is True
    assert settings.timeout == pytest.approx(0.25)

    defaults = RateLimitSettings.from_config(load({"HELIOS_ATLAS_URL": "redis://127.0.0.1:6380/0"}))
    assert defaults.default_policy == RatePolicy(capacity=100, rate_num=20, rate_den=1)
    assert defaults.fail_open is True
    assert not RateLimitSettings.from_config(load({})).enabled, "no ATLAS, no rate limiting"


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("HELIOS_GATEWAY_RATE_LIMIT_DEFAULT_CAPACITY", "0", "positive integer"),
        ("HELIOS_GATEWAY_RATE_LIMIT_DEFAULT_RATE_DEN", "soon", "positive integer"),
        ("HELIOS_GATEWAY_RATE_LIMIT_FAIL_MODE", "sideways", "open, closed"),
        ("HELIOS_GATEWAY_KV_MAX_VALUE_SIZE", "huge", "size"),
        ("HELIOS_ATLAS_RETRY_ATTEMPTS", "-1", ">= 0"),
    ],
)
def test_bad_values_name_the_setting(name, value, message):
    config = load({name: value, "HELIOS_ATLAS_URL": "redis://127.0.0.1:6380/0"})

    def build_all() -> None:
        RateLimitSettings.from_config(config)
        KVSettings.from_config(config)
        ClientOptions.from_config(config)

    with pytest.raises(ConfigError, match=f"{name}.*{message}"):
        build_all()


def test_policy_window_is_the_time_to_refill_an_empty_bucket():
    assert RatePolicy(100, 20, 1).window_seconds == 5
    assert RatePolicy(10, 3, 1).window_seconds == 4  # rounded up
    assert RatePolicy(10, 1, 3600).window_seconds == 36000


def test_kv_settings_and_client_options():
    config = load(
        {
            "HELIOS_ATLAS_URL": "redis://127.0.0.1:6380/0, redis://127.0.0.1:6381/0",
            "HELIOS_GATEWAY_KV_MAX_VALUE_SIZE": "64k",
            "HELIOS_ATLAS_RETRY_BACKOFF": "0",
        }
    )
    assert KVSettings.from_config(config) == KVSettings(
        database=1, max_value_size=65536, max_key_length=512, max_list_count=1000
    )
    options = ClientOptions.from_config(config, db=1)
    assert options.nodes == ("redis://127.0.0.1:6380/0", "redis://127.0.0.1:6381/0")
    assert (options.db, options.socket_timeout, options.connect_timeout) == (1, 5.0, 1.0)
    assert (options.retry_attempts, options.retry_backoff) == (2, 0.0)
    with pytest.raises(AtlasNotConfigured):
        ClientOptions.from_config(load({}))
