"""ATLAS's settings, resolved from flags, HELIOS_ATLAS_* env, the YAML file and defaults."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from helios_site.config import Config


@dataclass(frozen=True)
class AtlasSettings:
    """Everything `runatlas` needs; build it with from_config()."""

    host: str
    port: int
    data_dir: Path
    sync_mode: str
    requirepass: str
    protected_mode: bool
    maxclients: int
    timeout: int
    databases: int
    proto_max_bulk_len: int
    client_query_buffer_limit: int
    client_output_buffer_limit: int
    metrics_host: str
    metrics_port: int

    @classmethod
    def from_config(cls, config: Config, **flags: Any) -> AtlasSettings:
        """Flags use the setting's last path part as name (listen, sync_mode, ...); None = unset."""

        def get(path: str, flag_name: str | None = None) -> Any:
            name = path.rsplit(".", 1)[-1]
            flag_key = flag_name or name
            return config.get(path, flag=flags.get(flag_key), flag_name="--" + flag_key.replace("_", "-"))

        host, port = get("atlas.listen")
        metrics_host, metrics_port = get("atlas.metrics_listen")
        return cls(
            host=host,
            port=port,
            data_dir=Path(get("atlas.data_dir")),
            sync_mode=get("atlas.aof_fsync", "sync_mode"),
            requirepass=get("atlas.requirepass") or "",
            protected_mode=get("atlas.protected_mode"),
            maxclients=get("atlas.maxclients"),
            timeout=get("atlas.timeout"),
            databases=get("atlas.databases"),
            proto_max_bulk_len=get("atlas.proto_max_bulk_len"),
            client_query_buffer_limit=get("atlas.client_query_buffer_limit"),
            client_output_buffer_limit=get("atlas.client_output_buffer_limit"),
            metrics_host=metrics_host,
            metrics_port=metrics_port,
        )


@dataclass(frozen=True)
class KVSettings:
    """The KV REST API's limits and where its keys live (gateway.kv.*); build it with from_config()."""

    database: int
    max_value_size: int
    max_key_length: int
    max_list_count: int

    @classmethod
    def from_config(cls, config: Config) -> KVSettings:
        return cls(
            database=config.get("gateway.kv.database"),
            max_value_size=config.get("gateway.kv.max_value_size"),
            max_key_length=config.get("gateway.kv.max_key_length"),
            max_list_count=config.get("gateway.kv.max_list_count"),
        )


@functools.cache
def kv_settings() -> KVSettings:
    """The gateway's KV settings, read once per process (tests call kv_settings.cache_clear())."""
    from django.conf import settings

    return KVSettings.from_config(settings.CONFIG)
