"""The proxy's typed settings, resolved from flags, HELIOS_PROXY_* env and the YAML `proxy` section.

Upstreams and routes come from YAML (or `--backend`, which fills an upstream named `default`):

    proxy:
      upstreams:
        api:
          algorithm: least_connections      # round_robin (default), weighted_round_robin,
                                            # least_connections, power_of_two, consistent_hash
          hash_key: header:X-User-ID        # consistent_hash only: client_ip (default) or header:NAME
          retries: 2
          backends:
            - http://127.0.0.1:8443
            - {url: http://127.0.0.1:8444, weight: 3}
          health_check: {path: /healthz, interval: 5s, timeout: 2s, expected_status: 200-399,
                         healthy_threshold: 2, unhealthy_threshold: 3, enabled: true}
          circuit_breaker: {consecutive_failures: 5, error_rate: 0.5, window: 10s, min_requests: 20,
                            cooldown: 10s, half_open_probes: 3}
          outlier_detection: {consecutive_errors: 5, latency_threshold: 2s, ejection_time: 30s,
                              max_ejection_time: 300s, max_ejected_percent: 50, enabled: true}
      routes:
        - {host: api.example.com, path_prefix: /v1/, upstream: api}
        - {path_prefix: /, upstream: default}

Nothing here is read at import time; `load_settings()` builds one ProxySettings.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from helios_site import config as helios_config
from helios_site.config import Config, ConfigError
from proxy.balancer import ALGORITHMS
from proxy.breaker import BreakerPolicy
from proxy.health import HealthCheckPolicy, OutlierPolicy

DEFAULT_BACKEND = "http://127.0.0.1:8443"
DEFAULT_UPSTREAM = "default"
MAX_WEIGHT = 100


@dataclass(frozen=True)
class BackendSettings:
    url: str
    host: str
    port: int
    weight: int = 1


@dataclass(frozen=True)
class UpstreamSettings:
    name: str
    backends: tuple[BackendSettings, ...]
    algorithm: str = "round_robin"
    hash_header: str | None = None  # consistent_hash on this header; None: on the client address
    retries: int = 2
    health_check: HealthCheckPolicy = field(default_factory=HealthCheckPolicy)
    breaker: BreakerPolicy = field(default_factory=BreakerPolicy)
    outlier: OutlierPolicy = field(default_factory=OutlierPolicy)


@dataclass(frozen=True)
class RouteSettings:
    upstream: str
    host: str | None = None
    path_prefix: str = "/"


@dataclass(frozen=True)
class ProxySettings:
    """Everything a proxy worker needs, resolved and validated."""

    listen: tuple[str, int]
    workers: int
    metrics_listen: tuple[str, int]
    upstreams: tuple[UpstreamSettings, ...]
    routes: tuple[RouteSettings, ...]
    connect_timeout: float = 3.0
    header_timeout: float = 10.0
    idle_timeout: float = 60.0
    request_timeout: float = 60.0
    upstream_keepalive_timeout: float = 4.0
    upstream_keepalive: int = 64
    max_header_size: int = 16 * 1024
    max_body_size: int = 1024**3
    retry_budget_ratio: float = 0.2
    access_log: bool = True
    drain_timeout: float = 8.0
    log_level: str = "info"


@dataclass(frozen=True)
class ProxyFlags:
    """The command-line flags of runproxy; None means "not given" (env, YAML or default apply)."""

    listen: str | None = None
    workers: int | None = None
    metrics_listen: str | None = None
    backends: tuple[str, ...] = ()
    config_file: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "listen": self.listen,
            "workers": self.workers,
            "metrics_listen": self.metrics_listen,
            "backends": list(self.backends),
            "config_file": self.config_file,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ProxyFlags:
        return cls(
            listen=data.get("listen"),
            workers=data.get("workers"),
            metrics_listen=data.get("metrics_listen"),
            backends=tuple(data.get("backends") or ()),
            config_file=data.get("config_file"),
        )


def load_config(flags: ProxyFlags, environ: Mapping[str, str] | None = None) -> Config:
    """The HELIOS configuration, with `--config FILE` taking the place of HELIOS_CONFIG."""
    environ = dict(os.environ if environ is None else environ)
    if flags.config_file:
        environ["HELIOS_CONFIG"] = flags.config_file
    return helios_config.load(environ)


def load_settings(flags: ProxyFlags, environ: Mapping[str, str] | None = None) -> ProxySettings:
    """Resolve and validate every proxy setting; raises ConfigError with a one-line reason."""
    cfg = load_config(flags, environ)
    default_interval = cfg.get("proxy.health_check_interval")
    default_path = cfg.get("proxy.health_check_path")
    default_timeout = cfg.get("proxy.health_check_timeout")
    default_retries = cfg.get("proxy.retries")
    defaults = HealthCheckPolicy(path=default_path, interval=default_interval, timeout=default_timeout)

    raw_upstreams = cfg.get("proxy.upstreams") or {}
    if not isinstance(raw_upstreams, dict):
        raise ConfigError("proxy.upstreams: expected a mapping of upstream name to its settings")
    upstreams = {str(name): _upstream(str(name), raw, defaults, default_retries) for name, raw in raw_upstreams.items()}

    backend_flag = list(flags.backends) or None
    backend_urls = cfg.get("proxy.backends", flag=backend_flag, flag_name="--backend")
    if backend_urls is None and not upstreams:
        backend_urls = [DEFAULT_BACKEND]
    if backend_urls:
        base = upstreams.get(DEFAULT_UPSTREAM)
        backends = tuple(_backend(url, f"proxy.backends[{i}]") for i, url in enumerate(backend_urls))
        if base is None:
            upstreams[DEFAULT_UPSTREAM] = UpstreamSettings(
                name=DEFAULT_UPSTREAM, backends=backends, health_check=defaults, retries=default_retries
            )
        else:
            upstreams[DEFAULT_UPSTREAM] = UpstreamSettings(**{**base.__dict__, "backends": backends})

    routes = _routes(cfg.get("proxy.routes"), upstreams)
    workers = cfg.get("proxy.workers", flag=flags.workers, flag_name="--workers")
    return ProxySettings(
        listen=cfg.get("proxy.listen", flag=flags.listen, flag_name="--listen"),
        workers=workers,
        metrics_listen=cfg.get("proxy.metrics_listen", flag=flags.metrics_listen, flag_name="--metrics-listen"),
        upstreams=tuple(upstreams.values()),
        routes=routes,
        connect_timeout=cfg.get("proxy.connect_timeout"),
        header_timeout=cfg.get("proxy.header_timeout"),
        idle_timeout=cfg.get("proxy.idle_timeout"),
        request_timeout=cfg.get("proxy.request_timeout"),
        upstream_keepalive_timeout=cfg.get("proxy.upstream_keepalive_timeout"),
        upstream_keepalive=cfg.get("proxy.upstream_keepalive"),
        max_header_size=cfg.get("proxy.max_header_size"),
        max_body_size=cfg.get("proxy.max_body_size"),
        retry_budget_ratio=cfg.get("proxy.retry_budget_ratio"),
        access_log=cfg.get("proxy.access_log"),
        drain_timeout=cfg.get("proxy.drain_timeout"),
        log_level=cfg.get("proxy.log_level"),
    )


def _routes(raw: Any, upstreams: Mapping[str, UpstreamSettings]) -> tuple[RouteSettings, ...]:
    if raw is None:
        if DEFAULT_UPSTREAM in upstreams:
            return (RouteSettings(upstream=DEFAULT_UPSTREAM),)
        if len(upstreams) == 1:
            return (RouteSettings(upstream=next(iter(upstreams))),)
        raise ConfigError("proxy.routes: required when there are several upstreams and none is named default")
    if not isinstance(raw, list):
        raise ConfigError("proxy.routes: expected a list of {host, path_prefix, upstream}")
    routes = []
    for index, item in enumerate(raw):
        where = f"proxy.routes[{index}]"
        if not isinstance(item, dict):
            raise ConfigError(f"{where}: expected a mapping with upstream, and host and/or path_prefix")
        _refuse_unknown(item, {"host", "path_prefix", "upstream"}, where)
        upstream = str(item.get("upstream", ""))
        if upstream not in upstreams:
            raise ConfigError(f"{where}: unknown upstream {upstream!r}")
        prefix = str(item.get("path_prefix", "/"))
        if not prefix.startswith("/"):
            raise ConfigError(f"{where}: path_prefix must start with /, got {prefix!r}")
        host = item.get("host")
        routes.append(RouteSettings(upstream=upstream, host=str(host).lower() if host else None, path_prefix=prefix))
    return tuple(routes)


def _upstream(name: str, raw: Any, defaults: HealthCheckPolicy, default_retries: int) -> UpstreamSettings:
    where = f"proxy.upstreams.{name}"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping with backends")
    _refuse_unknown(
        raw,
        {"backends", "algorithm", "hash_key", "retries", "health_check", "circuit_breaker", "outlier_detection"},
        where,
    )
    raw_backends = raw.get("backends")
    if not isinstance(raw_backends, list) or not raw_backends:
        raise ConfigError(f"{where}.backends: expected a non-empty list of URLs or {{url, weight}}")
    backends = []
    for index, item in enumerate(raw_backends):
        item_where = f"{where}.backends[{index}]"
        if isinstance(item, dict):
            _refuse_unknown(item, {"url", "weight"}, item_where)
            weight = _value(helios_config.positive_int, item.get("weight", 1), f"{item_where}.weight")
            if weight > MAX_WEIGHT:
                raise ConfigError(f"{item_where}.weight: at most {MAX_WEIGHT}, got {weight}")
            backends.append(_backend(item.get("url"), item_where, weight))
        else:
            backends.append(_backend(item, item_where))
    urls = [backend.url for backend in backends]
    if len(set(urls)) != len(urls):
        raise ConfigError(f"{where}.backends: a backend is listed twice")
    algorithm = str(raw.get("algorithm", "round_robin"))
    if algorithm not in ALGORITHMS:
        raise ConfigError(f"{where}.algorithm: expected one of {', '.join(ALGORITHMS)}, got {algorithm!r}")
    hash_key = str(raw.get("hash_key", "client_ip"))
    hash_header: str | None = None
    if hash_key.lower().startswith("header:") and hash_key[7:].strip():
        hash_header = hash_key[7:].strip().lower()
    elif hash_key != "client_ip":
        raise ConfigError(f"{where}.hash_key: expected client_ip or header:NAME, got {hash_key!r}")
    retries = _value(helios_config.non_negative_int, raw.get("retries", default_retries), f"{where}.retries")
    return UpstreamSettings(
        name=name,
        backends=tuple(backends),
        algorithm=algorithm,
        hash_header=hash_header,
        retries=retries,
        health_check=_health_check(raw.get("health_check"), defaults, f"{where}.health_check"),
        breaker=_breaker(raw.get("circuit_breaker"), f"{where}.circuit_breaker"),
        outlier=_outlier(raw.get("outlier_detection"), f"{where}.outlier_detection"),
    )


def _backend(raw: Any, where: str, weight: int = 1) -> BackendSettings:
    url = str(raw or "").strip().rstrip("/")
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme != "http" or not parts.hostname or (parts.path not in ("", "/")) or parts.query:
        raise ConfigError(f"{where}: expected a URL such as http://127.0.0.1:8443, got {raw!r}")
    return BackendSettings(url=url, host=parts.hostname, port=port or 80, weight=weight)


def _section(raw: Any, allowed: set[str], where: str) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping")
    _refuse_unknown(raw, allowed, where)
    return raw


def _health_check(raw: Any, defaults: HealthCheckPolicy, where: str) -> HealthCheckPolicy:
    keys = {"enabled", "path", "interval", "timeout", "expected_status", "healthy_threshold", "unhealthy_threshold"}
    section = _section(raw, keys, where)
    expected = defaults.expected_status
    if "expected_status" in section:
        expected = _status_range(section["expected_status"], f"{where}.expected_status")
    path = str(section.get("path", defaults.path))
    if not path.startswith("/"):
        raise ConfigError(f"{where}.path: must start with /, got {path!r}")
    return HealthCheckPolicy(
        enabled=_value(helios_config.parse_bool, section.get("enabled", defaults.enabled), f"{where}.enabled"),
        path=path,
        interval=_value(helios_config.parse_duration, section.get("interval", defaults.interval), f"{where}.interval"),
        timeout=_value(helios_config.parse_duration, section.get("timeout", defaults.timeout), f"{where}.timeout"),
        expected_status=expected,
        healthy_threshold=_value(
            helios_config.positive_int,
            section.get("healthy_threshold", defaults.healthy_threshold),
            f"{where}.healthy_threshold",
        ),
        unhealthy_threshold=_value(
            helios_config.positive_int,
            section.get("unhealthy_threshold", defaults.unhealthy_threshold),
            f"{where}.unhealthy_threshold",
        ),
    )


def _status_range(raw: Any, where: str) -> tuple[int, int]:
    text = str(raw).strip()
    low_text, _, high_text = text.partition("-")
    if not low_text.strip().isdigit() or (high_text and not high_text.strip().isdigit()):
        raise ConfigError(f"{where}: expected a status such as 200 or a range such as 200-399, got {raw!r}")
    low = int(low_text)
    high = int(high_text) if high_text else low
    if not 100 <= low <= high <= 599:
        raise ConfigError(f"{where}: expected statuses from 100 to 599, got {raw!r}")
    return low, high


def _breaker(raw: Any, where: str) -> BreakerPolicy:
    keys = {"consecutive_failures", "error_rate", "window", "min_requests", "cooldown", "half_open_probes"}
    section = _section(raw, keys, where)
    base = BreakerPolicy()
    return BreakerPolicy(
        consecutive_failures=_value(
            helios_config.positive_int,
            section.get("consecutive_failures", base.consecutive_failures),
            f"{where}.consecutive_failures",
        ),
        error_rate=_value(
            helios_config.parse_fraction, section.get("error_rate", base.error_rate), f"{where}.error_rate"
        ),
        window=_value(helios_config.parse_duration, section.get("window", base.window), f"{where}.window"),
        min_requests=_value(
            helios_config.positive_int, section.get("min_requests", base.min_requests), f"{where}.min_requests"
        ),
        cooldown=_value(helios_config.parse_duration, section.get("cooldown", base.cooldown), f"{where}.cooldown"),
        half_open_probes=_value(
            helios_config.positive_int,
            section.get("half_open_probes", base.half_open_probes),
            f"{where}.half_open_probes",
        ),
    )


def _outlier(raw: Any, where: str) -> OutlierPolicy:
    keys = {
        "enabled",
        "consecutive_errors",
        "latency_threshold",
        "ejection_time",
        "max_ejection_time",
        "max_ejected_percent",
    }
    section = _section(raw, keys, where)
    base = OutlierPolicy()
    latency = section.get("latency_threshold")
    percent = _value(
        helios_config.non_negative_int,
        section.get("max_ejected_percent", base.max_ejected_percent),
        f"{where}.max_ejected_percent",
    )
    if percent > 100:
        raise ConfigError(f"{where}.max_ejected_percent: at most 100, got {percent}")
    return OutlierPolicy(
        enabled=_value(helios_config.parse_bool, section.get("enabled", base.enabled), f"{where}.enabled"),
        consecutive_errors=_value(
            helios_config.positive_int,
            section.get("consecutive_errors", base.consecutive_errors),
            f"{where}.consecutive_errors",
        ),
        latency_threshold=None
        if latency is None
        else _value(helios_config.parse_duration, latency, f"{where}.latency_threshold"),
        ejection_time=_value(
            helios_config.parse_duration, section.get("ejection_time", base.ejection_time), f"{where}.ejection_time"
        ),
        max_ejection_time=_value(
            helios_config.parse_duration,
            section.get("max_ejection_time", base.max_ejection_time),
            f"{where}.max_ejection_time",
        ),
        max_ejected_percent=percent,
    )


def _value(parse: Any, raw: Any, where: str) -> Any:
    try:
        return parse(raw)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _refuse_unknown(section: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(str(key) for key in section if key not in allowed)
    if unknown:
        raise ConfigError(f"{where}: unknown setting {unknown[0]}")
