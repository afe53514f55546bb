"""Run one ATLAS node until SIGTERM, SIGINT or SHUTDOWN."""

from __future__ import annotations

import asyncio
import logging

import uvloop

from atlas.commands.session import RuntimeConfig, ServerState
from atlas.conf import AtlasSettings
from atlas.metrics import registry_for, serve_metrics
from atlas.persistence.engine import Persistence, PersistenceOptions
from atlas.persistence.metrics import PersistenceCollector
from atlas.server import AtlasServer, ListenAddress, check_protected_mode, install_signal_handlers

logger = logging.getLogger(__name__)


def runtime_config(settings: AtlasSettings) -> RuntimeConfig:
    return RuntimeConfig(
        requirepass=settings.requirepass,
        maxclients=settings.maxclients,
        timeout=settings.timeout,
        proto_max_bulk_len=settings.proto_max_bulk_len,
        client_query_buffer_limit=settings.client_query_buffer_limit,
        client_output_buffer_limit=settings.client_output_buffer_limit,
        protected_mode=settings.protected_mode,
        dir=str(settings.data_dir.resolve()),
        databases=settings.databases,
        port=settings.port,
        bind=settings.host,
        appendfsync={"every": "always", "interval": "everysec", "none": "no"}[settings.sync_mode],
        appendonly=settings.appendonly,
        save=f"{settings.snapshot_interval:g} 1" if settings.snapshot_interval else "",
    )


async def serve(settings: AtlasSettings) -> None:
    check_protected_mode(settings.host, settings.requirepass, settings.protected_mode)
    state = ServerState(config=runtime_config(settings))
    persistence = Persistence(state, PersistenceOptions(settings.data_dir, appendonly=settings.appendonly))
    persistence.recover()  # before listening: clients never see a partial keyspace
    try:
        server = AtlasServer(state, ListenAddress(settings.host, settings.port))
        if settings.appendonly:
            server.reply_gate = persistence
        server.stop_hooks.append(persistence.stop)
        persistence.start(asyncio.get_running_loop())
        await server.start()
        registry = registry_for(state)
        registry.register(PersistenceCollector(persistence))
        metrics = await serve_metrics(registry, settings.metrics_host, settings.metrics_port)
    except BaseException:
        persistence.stop(save=False)
        raise
    install_signal_handlers(server)
    try:
        await server.wait_stopped()
    finally:
        metrics.close()
        await metrics.wait_closed()


def run(settings: AtlasSettings) -> None:
    """Serve on uvloop until stopped."""
    uvloop.run(serve(settings))
