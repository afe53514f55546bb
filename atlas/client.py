"""How Django code reaches ATLAS: pooled redis-py clients (hiredis parser) from HELIOS_ATLAS_URL.

    from atlas.client import atlas_client
    atlas_client().set("greeting", "hello")                     # plain redis-py, bounded timeouts

    from atlas.client import AtlasClient, ClientOptions
    client = AtlasClient.shared(ClientOptions.from_config(settings.CONFIG, db=1))
    client.call(lambda node: node.get("greeting"))               # retried, AtlasUnavailable when down

AtlasClient is what request paths use. Every call is bounded: connecting takes at most
atlas.connect_timeout, a reply at most atlas.socket_timeout (or the caller's own timeout). A call
that loses its connection, or is answered with an error that means the leader is changing
(TRYAGAIN, CLUSTERDOWN, LOADING, MASTERDOWN, READONLY, NOTLEADER), is retried atlas.retry_attempts
times with a doubling backoff (atlas.retry_backoff); a timeout is not retried, because a node that
is slow would only be asked to be slow again. What is left raises AtlasUnavailable, which views
answer with 503 and Retry-After.

The client holds a list of nodes and moves to the next one after a failure. Today the
configuration names one node (atlas.url); the ATLAS-on-Raft issue passes the cluster's URLs and
teaches `_next_node` to follow the leader it is told about.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import redis
from django.conf import settings
from prometheus_client import Counter
from redis.backoff import NoBackoff
from redis.retry import Retry

from helios_site.config import Config

logger = logging.getLogger(__name__)

T = TypeVar("T")

# Error replies a node gives while the cluster has no settled leader: the same call can succeed
# on the next node or a moment later (names from Redis Cluster and Redis replication, plus ours).
LEADER_CHANGE_ERRORS = ("TRYAGAIN", "CLUSTERDOWN", "LOADING", "MASTERDOWN", "READONLY", "NOTLEADER")

RETRIES = Counter("atlas_client_retries", "ATLAS calls retried after a lost connection or a leader change.", ["reason"])
FAILURES = Counter("atlas_client_failures", "ATLAS calls given up on (answered 503 or failed open).", ["reason"])


class AtlasNotConfigured(Exception):
    """HELIOS_ATLAS_URL (atlas.url) is not set."""


class AtlasUnavailable(Exception):
    """ATLAS did not answer within the configured bounds: refused or lost connection, timeout, or a
    leader change that did not settle within the retries."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


# The same errors as redis-py raises them (it strips the code from the message); LOADING becomes
# BusyLoadingError, a ConnectionError, and is retried as one.
_LEADER_CHANGE_EXCEPTIONS = (
    redis.exceptions.TryAgainError,
    redis.exceptions.ClusterDownError,
    redis.exceptions.ReadOnlyError,
)


def is_leader_change(error: redis.exceptions.ResponseError) -> bool:
    """True for an error reply that means "no settled leader", also as redis-py words it in pipelines."""
    if isinstance(error, _LEADER_CHANGE_EXCEPTIONS):
        return True
    text = str(error).rsplit("caused error: ", 1)[-1]
    return text.split(" ", 1)[0].upper() in LEADER_CHANGE_ERRORS


def node_urls(url: str) -> tuple[str, ...]:
    """The nodes named by an ATLAS URL setting: one URL, or several separated by commas."""
    return tuple(part.strip() for part in url.split(",") if part.strip())


@dataclass(frozen=True)
class ClientOptions:
    """Where ATLAS is and how long a call may take. `db` None means the database of the URL."""

    nodes: tuple[str, ...]
    db: int | None
    socket_timeout: float
    connect_timeout: float
    retry_attempts: int
    retry_backoff: float

    @classmethod
    def from_config(
        cls, config: Config, *, db: int | None = None, socket_timeout: float | None = None
    ) -> ClientOptions:
        """Options from atlas.*; raises AtlasNotConfigured without atlas.url."""
        url = config.get("atlas.url")
        if not url:
            raise AtlasNotConfigured("set HELIOS_ATLAS_URL (atlas.url), e.g. redis://127.0.0.1:6380/0")
        return cls(
            nodes=node_urls(url),
            db=db,
            socket_timeout=socket_timeout if socket_timeout is not None else config.get("atlas.socket_timeout"),
            connect_timeout=config.get("atlas.connect_timeout"),
            retry_attempts=config.get("atlas.retry_attempts"),
            retry_backoff=config.get("atlas.retry_backoff"),
        )


def connect_node(url: str, *, db: int | None, socket_timeout: float, connect_timeout: float) -> redis.Redis:
    """A redis-py client for one node, with redis-py's own retries off (AtlasClient retries)."""
    pool = redis.ConnectionPool.from_url(
        url,
        socket_timeout=socket_timeout,
        socket_connect_timeout=connect_timeout,
        health_check_interval=30,
        protocol=3,
        retry=Retry(NoBackoff(), 0),
    )
    if db is not None:
        pool.connection_kwargs["db"] = db
    return redis.Redis(connection_pool=pool)


class AtlasClient:
    """Runs calls against ATLAS within bounded time, retrying lost connections and leader changes."""

    _shared: dict[ClientOptions, AtlasClient] = {}
    _shared_lock = threading.Lock()

    def __init__(self, options: ClientOptions, sleep: Callable[[float], None] = time.sleep) -> None:
        if not options.nodes:
            raise AtlasNotConfigured("no ATLAS node URL given")
        self.options = options
        self._sleep = sleep
        self._nodes: Sequence[redis.Redis] = [
            connect_node(
                url, db=options.db, socket_timeout=options.socket_timeout, connect_timeout=options.connect_timeout
            )
            for url in options.nodes
        ]
        self._current = 0

    @classmethod
    def shared(cls, options: ClientOptions) -> AtlasClient:
        """The process's client for these options (one connection pool per node, reused)."""
        client = cls._shared.get(options)
        if client is None:
            with cls._shared_lock:
                client = cls._shared.setdefault(options, cls(options))
        return client

    @classmethod
    def close_shared(cls) -> None:
        """Close and forget every shared client (their settings changed, or the process is ending)."""
        with cls._shared_lock:
            clients = list(cls._shared.values())
            cls._shared.clear()
        for client in clients:
            client.close()

    def close(self) -> None:
        for node in self._nodes:
            node.close()

    @property
    def node(self) -> redis.Redis:
        """The node calls go to now."""
        return self._nodes[self._current]

    def call(self, operation: Callable[[redis.Redis], T]) -> T:
        """operation(node), retried on another (or the same) node after a lost connection or a leader
        change. Raises AtlasUnavailable when ATLAS cannot answer; other error replies pass through."""
        delay = self.options.retry_backoff
        for attempt in range(self.options.retry_attempts + 1):
            node = self.node
            try:
                return operation(node)
            except redis.exceptions.TimeoutError as exc:
                FAILURES.labels("timeout").inc()
                raise AtlasUnavailable(
                    f"ATLAS did not answer within {self.options.socket_timeout}s", "timeout"
                ) from exc
            except redis.exceptions.ConnectionError as exc:
                error: Exception = exc
                reason = "connection"
            except redis.exceptions.ResponseError as exc:
                if not is_leader_change(exc):
                    raise
                error, reason = exc, "leader_change"
            self._next_node(node)
            if attempt < self.options.retry_attempts:
                RETRIES.labels(reason).inc()
                logger.info(
                    "ATLAS call failed (%s), retrying: %s",
                    reason,
                    error,
                    extra={"action": "atlas_retry", "reason": reason},
                )
                if delay:
                    self._sleep(delay)
                delay *= 2
        FAILURES.labels(reason).inc()
        raise AtlasUnavailable(f"ATLAS is unavailable: {error}", reason) from error

    def _next_node(self, failed: redis.Redis) -> None:
        """Move past a node that failed (with one node, stay: the retry reconnects)."""
        if self._nodes[self._current] is failed:
            self._current = (self._current + 1) % len(self._nodes)


def atlas_url() -> str | None:
    url: str | None = settings.CONFIG.get("atlas.url")
    return url


def atlas_client() -> redis.Redis:
    """The process's plain redis-py client for the first ATLAS node (bounded timeouts, no retries).
    Raises AtlasNotConfigured without an ATLAS URL."""
    return AtlasClient.shared(ClientOptions.from_config(settings.CONFIG)).node


READINESS_TIMEOUT_SECONDS = 1.0


def check_atlas() -> None:
    """Readiness: ATLAS answers PING within a second, on a connection of its own (raises otherwise)."""
    url = atlas_url()
    if not url:
        raise AtlasNotConfigured("HELIOS_ATLAS_URL is not set")
    probe = redis.Redis.from_url(
        node_urls(url)[0],
        socket_timeout=READINESS_TIMEOUT_SECONDS,
        socket_connect_timeout=READINESS_TIMEOUT_SECONDS,
        retry=Retry(NoBackoff(), 0),
    )
    try:
        if not probe.ping():
            raise ConnectionError("ATLAS did not answer PING")
    finally:
        probe.close()
