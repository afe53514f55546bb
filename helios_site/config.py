"""Settings shared by every HELIOS process, resolved as: command flag > HELIOS_* env > YAML > default.

Every setting HELIOS knows is declared once in SCHEMA, with its parser and default. The YAML file
named by HELIOS_CONFIG uses the sections of configs/config.example.yaml (atlas, gateway, proxy,
worker); a key that is not in SCHEMA is refused, so a typo cannot silently fall back to a default.
A bad value raises ConfigError, whose message is one line naming the setting and where it came from.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

BASE_DIR = Path(__file__).resolve().parent.parent

Parser = Callable[[Any], Any]


class ConfigError(Exception):
    """A setting is missing or malformed. str() is one line that names the setting."""


# -- parsers: each takes a raw value (a string from env, or a YAML scalar) and returns the typed
# value, raising ValueError with a short reason.

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
_SIZE = re.compile(r"^\s*(\d+)\s*(b|kb|k|mb|m|gb|g)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {None: 1, "b": 1, "k": 1024, "kb": 1024, "m": 1024**2, "mb": 1024**2, "g": 1024**3, "gb": 1024**3}


def parse_duration(raw: Any) -> float:
    """Seconds from '150ms', '5s', '5m', '1h', '7d' or a bare number of seconds."""
    if isinstance(raw, bool):
        raise ValueError(f"expected a duration such as 5s or 150ms, got {raw!r}")
    if isinstance(raw, int | float):
        seconds = float(raw)
    else:
        match = _DURATION.match(str(raw))
        if not match:
            raise ValueError(f"expected a duration such as 5s or 150ms, got {raw!r}")
        seconds = float(match.group(1)) * _DURATION_UNITS[match.group(2)]
    if seconds <= 0:
        raise ValueError(f"expected a positive duration, got {raw!r}")
    return seconds


def parse_size(raw: Any) -> int:
    """Bytes from '512mb', '64k', '1g' or a bare number of bytes."""
    match = _SIZE.match(str(raw))
    if isinstance(raw, bool) or not match:
        raise ValueError(f"expected a size such as 512mb or 64k, got {raw!r}")
    unit = match.group(2).lower() if match.group(2) else None
    return int(match.group(1)) * _SIZE_UNITS[unit]


def parse_bool(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in {"1", "true", "yes", "on"}:
        return True
    if text in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(f"expected true or false, got {raw!r}")


def non_negative_int(raw: Any) -> int:
    if isinstance(raw, bool):
        raise ValueError(f"expected an integer >= 0, got {raw!r}")
    try:
        value = int(str(raw).strip())
    except ValueError:
        raise ValueError(f"expected an integer >= 0, got {raw!r}") from None
    if value < 0:
        raise ValueError(f"expected an integer >= 0, got {raw!r}")
    return value


def positive_int(raw: Any) -> int:
    if isinstance(raw, bool):
        raise ValueError(f"expected a positive integer, got {raw!r}")
    try:
        value = int(str(raw).strip())
    except ValueError:
        raise ValueError(f"expected a positive integer, got {raw!r}") from None
    if value < 1:
        raise ValueError(f"expected a positive integer, got {raw!r}")
    return value


def parse_address(raw: Any) -> tuple[str, int]:
    """(host, port) from 'host:port', '[::1]:port' or ':port' (which means 127.0.0.1)."""
    text = str(raw).strip()
    host, sep, port_text = text.rpartition(":")
    if not sep or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"expected host:port, got {raw!r}")
    host = host.strip("[]") or "127.0.0.1"
    return host, int(port_text)


def parse_string_list(raw: Any) -> list[str]:
    """A YAML list, or a comma-separated string from the environment."""
    items = raw if isinstance(raw, list) else str(raw).split(",")
    return [str(item).strip() for item in items if str(item).strip()]


def parse_choice(*choices: str, aliases: Mapping[str, str] | None = None) -> Parser:
    aliases = aliases or {}

    def parse(raw: Any) -> str:
        text = str(raw).strip().lower()
        text = aliases.get(text, text)
        if text not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}, got {raw!r}")
        return text

    return parse


def parse_text(raw: Any) -> str:
    return str(raw)


@dataclass(frozen=True)
class Setting:
    """One setting: its dotted YAML path, how to parse it, its default and its env names."""

    path: str
    parse: Parser
    default: Any
    env: tuple[str, ...] = ()
    help: str = ""

    @property
    def env_names(self) -> tuple[str, ...]:
        return self.env or ("HELIOS_" + self.path.upper().replace(".", "_"),)


SCHEMA: tuple[Setting, ...] = (
    # gateway: the Django project (DRF API, admin) under gunicorn
    Setting("gateway.listen", parse_address, "127.0.0.1:8443", help="address gunicorn binds"),
    Setting("gateway.workers", positive_int, 2, help="gunicorn worker processes"),
    Setting(
        "gateway.environment",
        parse_choice("development", "production"),
        "development",
        env=("HELIOS_ENV",),
        help="production requires a secret key and turns on the secure cookie and HTTPS settings",
    ),
    Setting("gateway.debug", parse_bool, False, env=("HELIOS_DEBUG",), help="Django DEBUG"),
    Setting("gateway.secret_key", parse_text, None, env=("HELIOS_SECRET_KEY",)),
    Setting("gateway.database_url", parse_text, None, env=("DATABASE_URL", "HELIOS_DATABASE_URL")),
    Setting("gateway.allowed_hosts", parse_string_list, None, help="default: loopback names"),
    Setting("gateway.csrf_trusted_origins", parse_string_list, []),
    Setting("gateway.secure_ssl_redirect", parse_bool, True, help="production only"),
    Setting("gateway.hsts_seconds", positive_int, 31536000, help="production only"),
    Setting("gateway.trust_forwarded_proto", parse_bool, False, help="trust X-Forwarded-Proto"),
    Setting("gateway.access_token_lifetime", parse_duration, "15m"),
    Setting("gateway.refresh_token_lifetime", parse_duration, "7d"),
    Setting("gateway.login_rate_per_username", parse_text, "10/min"),
    Setting("gateway.login_rate_per_ip", parse_text, "60/min"),
    Setting("gateway.page_size", positive_int, 50),
    Setting("gateway.log_level", parse_choice("debug", "info", "warning", "error"), "info"),
    Setting("gateway.var_dir", parse_text, str(BASE_DIR / "var"), env=("HELIOS_VAR_DIR",)),
    # atlas: the key-value server (manage.py runatlas), and how Django reaches it
    Setting("atlas.url", parse_text, None, env=("HELIOS_ATLAS_URL",), help="redis:// URL Django uses"),
    Setting("atlas.socket_timeout", parse_duration, "5s", help="client-side timeout of one ATLAS call"),
    Setting("atlas.listen", parse_address, "127.0.0.1:6380"),
    Setting("atlas.data_dir", parse_text, str(BASE_DIR / "var" / "atlas")),
    Setting(
        "atlas.aof_fsync",
        parse_choice("every", "interval", "none", aliases={"always": "every", "everysec": "interval", "no": "none"}),
        "every",
        help="flag --sync-mode",
    ),
    Setting("atlas.requirepass", parse_text, None),
    Setting("atlas.protected_mode", parse_bool, True),
    Setting("atlas.maxclients", positive_int, 10000),
    Setting("atlas.timeout", non_negative_int, 0, help="close clients idle this many seconds (0: never)"),
    Setting("atlas.databases", positive_int, 16),
    Setting("atlas.proto_max_bulk_len", parse_size, "512mb"),
    Setting("atlas.client_query_buffer_limit", parse_size, "1gb"),
    Setting("atlas.client_output_buffer_limit", parse_size, "64mb", help="backlog that drops a slow subscriber"),
    Setting("atlas.metrics_listen", parse_address, "127.0.0.1:9091"),
    # worker: `manage.py runworker`, the job queue's worker processes (jobs/conf.py reads these)
    Setting("worker.worker_id", parse_text, None, help="default: <hostname>-<pid>"),
    Setting("worker.queues", parse_string_list, [], help="queues to take jobs from; empty means every queue"),
    Setting("worker.concurrency", positive_int, 4, help="jobs one worker process runs at once (threads)"),
    Setting("worker.prefetch", non_negative_int, 4, help="jobs claimed ahead of free threads, to keep them busy"),
    Setting("worker.poll_interval", parse_duration, "5s", help="longest idle wait between two claims"),
    Setting("worker.max_attempts", positive_int, 3, help="default attempts of a job before it is DEAD"),
    Setting("worker.lease", parse_duration, "30s", help="visibility timeout, renewed by a heartbeat"),
    Setting("worker.shutdown_grace", parse_duration, "8s", help="time in-flight jobs get to finish on SIGTERM"),
    Setting("worker.metrics_listen", parse_address, "127.0.0.1:9092", help="Prometheus metrics of the worker"),
    Setting("worker.imports", parse_string_list, [], help="task modules to import besides every app's tasks.py"),
    Setting("worker.http_allow_private", parse_bool, False, help="let the http task reach private addresses"),
)


# -- proxy: parsers for its structured settings (proxy/conf.py validates their contents).


def parse_structure(raw: Any) -> Any:
    """A YAML mapping or list as is, or a YAML/JSON document from the environment."""
    if isinstance(raw, dict | list):
        return raw
    try:
        value = yaml.safe_load(str(raw))
    except yaml.YAMLError:
        raise ValueError(f"expected a YAML or JSON mapping or list, got {raw!r}") from None
    if not isinstance(value, dict | list):
        raise ValueError(f"expected a YAML or JSON mapping or list, got {raw!r}")
    return value


def parse_fraction(raw: Any) -> float:
    """A number from 0 to 1."""
    try:
        value = float(str(raw).strip())
    except ValueError:
        raise ValueError(f"expected a number from 0 to 1, got {raw!r}") from None
    if isinstance(raw, bool) or not 0 <= value <= 1:
        raise ValueError(f"expected a number from 0 to 1, got {raw!r}")
    return value


PROXY_SCHEMA: tuple[Setting, ...] = (
    Setting("proxy.listen", parse_address, "127.0.0.1:8080", help="address the proxy serves"),
    Setting("proxy.workers", positive_int, 1, help="worker processes sharing the port (SO_REUSEPORT)"),
    Setting("proxy.metrics_listen", parse_address, "127.0.0.1:9093", help="/metrics and /status"),
    Setting("proxy.backends", parse_string_list, None, help="backend URLs of the `default` upstream"),
    Setting("proxy.upstreams", parse_structure, None, help="named upstreams (see proxy/conf.py)"),
    Setting("proxy.routes", parse_structure, None, help="host and path prefix -> upstream"),
    Setting("proxy.health_check_interval", parse_duration, "5s"),
    Setting("proxy.health_check_path", parse_text, "/healthz"),
    Setting("proxy.health_check_timeout", parse_duration, "2s"),
    Setting("proxy.connect_timeout", parse_duration, "3s"),
    Setting("proxy.header_timeout", parse_duration, "10s", help="time a client has to send a request head"),
    Setting("proxy.idle_timeout", parse_duration, "60s", help="keep-alive client connections, idle tunnels"),
    Setting("proxy.request_timeout", parse_duration, "60s", help="whole exchange, request head to response end"),
    Setting("proxy.upstream_keepalive_timeout", parse_duration, "4s", help="idle pooled backend connections"),
    Setting("proxy.upstream_keepalive", non_negative_int, 64, help="idle pooled connections per backend"),
    Setting("proxy.max_header_size", parse_size, "16k"),
    Setting("proxy.max_body_size", parse_size, "1g"),
    Setting("proxy.retries", non_negative_int, 2, help="retries of an idempotent request on another backend"),
    Setting("proxy.retry_budget_ratio", parse_fraction, 0.2),
    Setting("proxy.access_log", parse_bool, True),
    Setting("proxy.drain_timeout", parse_duration, "8s", help="SIGTERM: time in-flight requests get"),
    Setting("proxy.log_level", parse_choice("debug", "info", "warning", "error"), "info"),
)
SCHEMA = SCHEMA + PROXY_SCHEMA


# -- gateway: the KV API, the rate limiter, trusted proxies, and how the gateway calls ATLAS.


def parse_networks(raw: Any) -> list[str]:
    """IP addresses or CIDR networks (a YAML list, or comma-separated from the environment)."""
    networks = []
    for item in parse_string_list(raw):
        try:
            networks.append(str(ipaddress.ip_network(item, strict=False)))
        except ValueError:
            raise ValueError(f"expected IP addresses or networks such as 10.0.0.0/8, got {item!r}") from None
    return networks


def non_negative_duration(raw: Any) -> float:
    """A duration that may be 0 ('0', '0s'), for backoffs that can be switched off."""
    if str(raw).strip() in {"0", "0s", "0ms", "0.0"}:
        return 0.0
    return parse_duration(raw)


GATEWAY_SCHEMA: tuple[Setting, ...] = (
    Setting(
        "gateway.trusted_proxies",
        parse_networks,
        "127.0.0.1,::1",
        help="peers whose X-Forwarded-For is believed (the HELIOS proxy runs on loopback)",
    ),
    Setting("gateway.kv.database", non_negative_int, 1, help="ATLAS database of the KV API (0 holds Django's cache)"),
    Setting("gateway.kv.max_value_size", parse_size, "1mb", help="UTF-8 bytes of a value (413 beyond)"),
    Setting("gateway.kv.max_key_length", positive_int, 512, help="UTF-8 bytes of a key (413 beyond)"),
    Setting("gateway.kv.max_list_count", positive_int, 1000, help="largest ?count= of a listing"),
    Setting("gateway.rate_limit.enabled", parse_bool, True, help="needs atlas.url; off without it"),
    Setting("gateway.rate_limit.default_capacity", positive_int, 100, help="bucket size: requests in a burst"),
    Setting("gateway.rate_limit.default_rate_num", positive_int, 20, help="refill: rate_num tokens ..."),
    Setting("gateway.rate_limit.default_rate_den", positive_int, 1, help="... per rate_den seconds"),
    Setting(
        "gateway.rate_limit.fail_mode",
        parse_choice("open", "closed"),
        "open",
        help="ATLAS unreachable: let requests through (open) or refuse them with 503 (closed)",
    ),
    Setting("gateway.rate_limit.timeout", parse_duration, "250ms", help="bound of one CL.THROTTLE call"),
    Setting("atlas.connect_timeout", parse_duration, "1s", help="client-side bound of connecting to ATLAS"),
    Setting(
        "atlas.retry_attempts",
        non_negative_int,
        2,
        help="retries of a call after a lost connection or a leader change (not after a timeout)",
    ),
    Setting("atlas.retry_backoff", non_negative_duration, "50ms", help="first retry delay, doubled for each retry"),
)
SCHEMA = SCHEMA + GATEWAY_SCHEMA

_SCHEMA_BY_PATH = {setting.path: setting for setting in SCHEMA}


@dataclass
class Config:
    """Resolves settings from one environment and one (optional) YAML document."""

    environ: Mapping[str, str]
    yaml_values: dict[str, Any] = field(default_factory=dict)
    yaml_path: str | None = None

    def get(self, path: str, flag: Any = None, flag_name: str | None = None) -> Any:
        """The value of `path`: `flag` when not None, else env, else YAML, else the default."""
        setting = _SCHEMA_BY_PATH[path]
        if flag is not None:
            return _parse(setting, flag, flag_name or "--" + path.rsplit(".", 1)[-1].replace("_", "-"))
        for name in setting.env_names:
            if name in self.environ:
                return _parse(setting, self.environ[name], name)
        if path in self.yaml_values:
            return _parse(setting, self.yaml_values[path], f"{path} in {self.yaml_path}")
        if setting.default is None:
            return None
        return _parse(setting, setting.default, f"default of {path}")

    def source(self, path: str) -> str:
        """Where the value of `path` comes from, for `manage.py helios_config`."""
        setting = _SCHEMA_BY_PATH[path]
        for name in setting.env_names:
            if name in self.environ:
                return f"env {name}"
        if path in self.yaml_values:
            return f"yaml {self.yaml_path}"
        return "default"


def _parse(setting: Setting, raw: Any, where: str) -> Any:
    try:
        return setting.parse(raw)
    except ValueError as exc:
        raise ConfigError(f"{where} ({setting.path}): {exc}") from None


def _flatten(document: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in document.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and path not in _SCHEMA_BY_PATH:
            flat.update(_flatten(value, path + "."))
        else:
            flat[path] = value
    return flat


def read_yaml(path: str) -> dict[str, Any]:
    """The settings of a YAML file as {dotted.path: value}; unknown keys are refused."""
    try:
        with open(path, encoding="utf-8") as handle:
            document = yaml.safe_load(handle)
    except FileNotFoundError:
        raise ConfigError(f"HELIOS_CONFIG: no such file: {path}") from None
    except OSError as exc:
        raise ConfigError(f"HELIOS_CONFIG: cannot read {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"HELIOS_CONFIG: {path} is not valid YAML{where}") from None
    if document is None:
        return {}
    if not isinstance(document, dict):
        raise ConfigError(f"HELIOS_CONFIG: {path} must be a mapping of sections")
    flat = _flatten(document)
    unknown = sorted(key for key in flat if key not in _SCHEMA_BY_PATH)
    if unknown:
        raise ConfigError(f"HELIOS_CONFIG: unknown setting {unknown[0]} in {path}")
    return flat


def load(environ: Mapping[str, str] | None = None) -> Config:
    """The configuration of this process: its environment plus the file named by HELIOS_CONFIG."""
    environ = os.environ if environ is None else environ
    yaml_path = environ.get("HELIOS_CONFIG") or None
    yaml_values = read_yaml(yaml_path) if yaml_path else {}
    return Config(environ=environ, yaml_values=yaml_values, yaml_path=yaml_path)
