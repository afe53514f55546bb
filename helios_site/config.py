"""Settings shared by every HELIOS process, resolved as: command flag > HELIOS_* env > YAML > default.

Every setting HELIOS knows is declared once in SCHEMA, with its parser and default. The YAML file
named by HELIOS_CONFIG uses the sections of configs/config.example.yaml (atlas, gateway, proxy,
worker); a key that is not in SCHEMA is refused, so a typo cannot silently fall back to a default.
A bad value raises ConfigError, whose message is one line naming the setting and where it came from.
"""

from __future__ import annotations

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


def non_negative_int(raw: Any) -> int:
    """An integer >= 0 (worker.prefetch)."""
    if isinstance(raw, bool):
        raise ValueError(f"expected an integer >= 0, got {raw!r}")
    try:
        value = int(str(raw).strip())
    except ValueError:
        raise ValueError(f"expected an integer >= 0, got {raw!r}") from None
    if value < 0:
        raise ValueError(f"expected an integer >= 0, got {raw!r}")
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
