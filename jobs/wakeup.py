"""What wakes an idle worker before its next poll: new work, as soon as it is committed.

- PostgreSQL: LISTEN on the channel the jobs table's triggers NOTIFY (migration 0002), on a
  connection of its own. Notifications are sent at commit, so a job enqueued in a transaction wakes
  workers exactly when it becomes visible. If the connection drops, the worker falls back to
  polling and reconnects with backoff.
- SQLite has no notifications; `PRAGMA data_version` changes whenever another connection commits,
  and reading it costs microseconds without taking a lock. When it changes, the watcher reads (a
  lock-free read in WAL mode) whether a job is due, and otherwise when the next one will be: the
  worker wakes now, or plans to wake then (a retry or a countdown enqueued by anyone).

Either way the worker also polls every worker.poll_interval, which alone would be enough.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Protocol

from django.db import DatabaseError, connection
from django.utils import timezone

from jobs import queue

logger = logging.getLogger(__name__)

CHANNEL = "helios_jobs"
LISTEN_TIMEOUT_SECONDS = 0.5
RECONNECT_FIRST_DELAY_SECONDS = 0.5
RECONNECT_MAX_DELAY_SECONDS = 10.0
SQLITE_CHECK_SECONDS = 0.02
WATCH_RETRY_SECONDS = 1.0


class Waker(Protocol):
    def start(self) -> None: ...

    def stop(self) -> None: ...


class _WakerThread(threading.Thread):
    """A daemon thread calling `on_wake` when work may be there. It uses django.db.connection,
    which is per thread: a connection of its own."""

    def __init__(
        self, name: str, queues: Sequence[str], on_wake: Callable[[], None], on_due: Callable[[datetime], None]
    ) -> None:
        super().__init__(name=name, daemon=True)
        self.queues = tuple(queues)
        self.on_wake = on_wake
        self.on_due = on_due
        self._stopped = threading.Event()

    def stop(self) -> None:
        self._stopped.set()

    @staticmethod
    def _close() -> None:
        with contextlib.suppress(DatabaseError):
            connection.close()


class PostgresListener(_WakerThread):
    """LISTEN helios_jobs; a notification names a queue, and wakes the worker if it serves it."""

    def __init__(self, queues: Sequence[str], on_wake: Callable[[], None], on_due: Callable[[datetime], None]) -> None:
        # A notification says "something became PENDING": the worker's claim, and its look at the
        # next scheduled job when the claim comes back empty, do the rest. on_due is not needed.
        super().__init__("jobs-listen", queues, on_wake, on_due)
        self.connected = threading.Event()

    def run(self) -> None:
        delay = RECONNECT_FIRST_DELAY_SECONDS
        while not self._stopped.is_set():
            try:
                self._listen()
            except Exception as exc:  # psycopg's errors from the raw connection, Django's from ensure_connection
                self.connected.clear()
                logger.warning(
                    "LISTEN connection lost (%s); polling until it is back",
                    exc,
                    extra={"action": "listen_lost", "retry_in_seconds": delay},
                )
            finally:
                self._close()
            if self._stopped.wait(delay):
                return
            delay = min(delay * 2, RECONNECT_MAX_DELAY_SECONDS)

    def _listen(self) -> None:
        connection.ensure_connection()
        raw = connection.connection  # autocommit, as Django leaves it outside transactions
        raw.execute(f"LISTEN {CHANNEL}")
        self.connected.set()
        logger.info("listening for new jobs", extra={"action": "listen_started", "channel": CHANNEL})
        self.on_wake()  # jobs may have come while this connection was down
        while not self._stopped.is_set():
            for notification in raw.notifies(timeout=LISTEN_TIMEOUT_SECONDS):
                if not self.queues or notification.payload in self.queues:
                    self.on_wake()


class SqliteChangeWatcher(_WakerThread):
    """Wakes the worker when another connection committed and a due job of its queues exists."""

    def __init__(
        self,
        queues: Sequence[str],
        on_wake: Callable[[], None],
        on_due: Callable[[datetime], None],
        interval: float = SQLITE_CHECK_SECONDS,
    ) -> None:
        super().__init__("jobs-watch", queues, on_wake, on_due)
        self.interval = interval

    def run(self) -> None:
        last_version: int | None = None
        while not self._stopped.wait(self.interval):
            try:
                with connection.cursor() as cursor:
                    cursor.execute("PRAGMA data_version")
                    row = cursor.fetchone()
                version = int(row[0]) if row else 0
                if version != last_version:
                    last_version = version
                    self._look()
            except DatabaseError as exc:
                logger.warning("change watcher: %s", exc, extra={"action": "watch_failed"})
                self._close()
                self._stopped.wait(WATCH_RETRY_SECONDS)  # the worker still polls meanwhile
        self._close()

    def _look(self) -> None:
        now = timezone.now()
        if queue.due_job_exists(queues=self.queues, now=now):
            self.on_wake()
            return
        due = queue.next_run_at(queues=self.queues)
        if due is not None:
            self.on_due(due)


def waker_for(
    vendor: str, queues: Sequence[str], on_wake: Callable[[], None], on_due: Callable[[datetime], None]
) -> Waker:
    if vendor == "postgresql":
        return PostgresListener(queues, on_wake, on_due)
    return SqliteChangeWatcher(queues, on_wake, on_due)
