"""The keyspace: 16 databases of key -> value with absolute expiry times, and the one place every
change is propagated from (the AOF and Raft listen there).

Expiry works as in Redis: lazily on access, and actively by a periodic cycle. The active cycle
pops a heap of deadlines instead of sampling, so every expired key is reclaimed without traffic.
Deadlines are absolute wall-clock milliseconds (they must survive restarts and be comparable to
EXPIREAT); a clock that jumps back delays expiry by the jump, never forever.
"""

from __future__ import annotations

import heapq
import random
import time
from collections.abc import Callable, Iterator
from typing import Any

from atlas.store.types import Value

Propagate = Callable[[int, list[bytes]], None]
Clock = Callable[[], float]

# Active expiry stops after this long per cycle, so that a mass expiry cannot stall the server.
ACTIVE_EXPIRE_BUDGET_SECONDS = 0.025
SCAN_GENERATIONS_KEPT = 16
SMALL_SCAN = 512


class Database:
    """One numbered database. Command code reads and writes through it; it never sees the wire."""

    __slots__ = ("_heap", "blocked", "data", "expires", "index", "store", "watched")

    def __init__(self, index: int, store: Store) -> None:
        self.index = index
        self.store = store
        self.data: dict[bytes, Value] = {}
        self.expires: dict[bytes, int] = {}
        self._heap: list[tuple[int, bytes]] = []
        # Registries the server fills: sessions WATCHing a key, sessions blocked on a key.
        self.watched: dict[bytes, set[Any]] = {}
        self.blocked: dict[bytes, Any] = {}

    def __len__(self) -> int:
        return len(self.data)

    # -- reads ------------------------------------------------------------------------------

    def lookup(self, key: bytes) -> Value | None:
        """The live value of `key`, or None; an expired key is deleted on the way."""
        value = self.data.get(key)
        if value is not None and self.expires:
            deadline = self.expires.get(key)
            if deadline is not None and deadline <= self.store.now_ms():
                self._expire(key)
                return None
        return value

    def contains(self, key: bytes) -> bool:
        return self.lookup(key) is not None

    def ttl_ms(self, key: bytes) -> int:
        """Milliseconds to live, -1 without expiry, -2 for a missing key (TTL's convention)."""
        if self.lookup(key) is None:
            return -2
        deadline = self.expires.get(key)
        if deadline is None:
            return -1
        return max(deadline - self.store.now_ms(), 0)

    def deadline(self, key: bytes) -> int | None:
        return self.expires.get(key)

    def random_key(self) -> bytes | None:
        """A random live key (O(n): Python dicts have no random access)."""
        for _ in range(100):
            if not self.data:
                return None
            key = random.choice(list(self.data))
            if self.lookup(key) is not None:
                return key
        return None

    def live_keys(self) -> Iterator[bytes]:
        """Every live key (expired ones are skipped, not deleted: callers may be iterating)."""
        now = self.store.now_ms()
        expires = self.expires
        for key in list(self.data):
            deadline = expires.get(key)
            if deadline is None or deadline > now:
                yield key

    # -- writes -----------------------------------------------------------------------------

    def set(self, key: bytes, value: Value, keep_ttl: bool = False) -> None:
        """Store `value` under `key`; its expiry is cleared unless keep_ttl."""
        self.data[key] = value
        if not keep_ttl and self.expires:
            self.expires.pop(key, None)
        self.store.dirty += 1

    def delete(self, key: bytes) -> bool:
        if self.lookup(key) is None:
            return False
        del self.data[key]
        self.expires.pop(key, None)
        self.store.dirty += 1
        return True

    def pop(self, key: bytes) -> Value | None:
        """Remove `key` and return its value (RENAME, MOVE, GETDEL)."""
        value = self.lookup(key)
        if value is not None:
            del self.data[key]
            self.expires.pop(key, None)
            self.store.dirty += 1
        return value

    def expire_at(self, key: bytes, deadline_ms: int) -> None:
        """Give a live key an absolute deadline; a deadline in the past deletes it now."""
        if deadline_ms <= self.store.now_ms():
            self.delete(key)
            return
        self.expires[key] = deadline_ms
        heapq.heappush(self._heap, (deadline_ms, key))
        self.store.dirty += 1
        if len(self._heap) > 2 * len(self.expires) + 1024:
            self._compact_heap()

    def persist(self, key: bytes) -> bool:
        if self.lookup(key) is None or key not in self.expires:
            return False
        del self.expires[key]
        self.store.dirty += 1
        return True

    def flush(self) -> int:
        removed = len(self.data)
        self.data.clear()
        self.expires.clear()
        self._heap.clear()
        self.store.dirty += max(removed, 1)
        return removed

    # -- expiry -----------------------------------------------------------------------------

    def _expire(self, key: bytes) -> None:
        if not self.store.expiry_enabled:
            return
        del self.data[key]
        del self.expires[key]
        self.store.dirty += 1
        self.store.propagate(self.index, [b"DEL", key])
        self.store.key_expired(self, key)

    def expire_due(self, deadline: float) -> int:
        """Delete the keys whose time has come, until `deadline` (time.monotonic); return how many."""
        if not self.store.expiry_enabled:
            return 0
        heap = self._heap
        now = self.store.now_ms()
        removed = 0
        while heap and heap[0][0] <= now:
            when, key = heapq.heappop(heap)
            if self.expires.get(key) == when:
                self._expire(key)
                removed += 1
                if removed % 64 == 0 and time.monotonic() > deadline:
                    break
        return removed

    def _compact_heap(self) -> None:
        """Drop heap entries of keys whose deadline changed or went away."""
        self._heap = [(when, key) for key, when in self.expires.items()]
        heapq.heapify(self._heap)


class Store:
    """The databases, the change counter, the clock, and the propagation point."""

    def __init__(self, databases: int = 16, clock: Clock = time.time) -> None:
        self.dbs = [Database(index, self) for index in range(databases)]
        self.dirty = 0  # bumped by every change; a command changed the keyspace iff it moved
        self.clock = clock
        self.expiry_enabled = True  # off on Raft followers: only the leader deletes expired keys
        self._listeners: list[Propagate] = []
        self._transaction: list[tuple[int, list[bytes]]] | None = None
        self._expired_hooks: list[Callable[[Database, bytes], None]] = []
        self.scans = ScanCursors()
        self.expired_keys = 0

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    def add_listener(self, listener: Propagate) -> None:
        """Call `listener(db_index, argv)` for every change, in order, as a deterministic command."""
        self._listeners.append(listener)

    def on_key_expired(self, hook: Callable[[Database, bytes], None]) -> None:
        self._expired_hooks.append(hook)

    @property
    def listening(self) -> bool:
        """Whether anything listens to changes (the AOF, Raft): if not, propagation is skipped."""
        return bool(self._listeners)

    def propagate(self, db_index: int, argv: list[bytes]) -> None:
        if not self._listeners:
            return
        if self._transaction is not None:
            self._transaction.append((db_index, argv))
            return
        for listener in self._listeners:
            listener(db_index, argv)

    def begin_transaction(self) -> None:
        """Hold propagated commands until end_transaction (EXEC)."""
        self._transaction = []

    def end_transaction(self) -> None:
        """Release the held commands, wrapped in MULTI/EXEC when there is more than one."""
        held, self._transaction = self._transaction or [], None
        if len(held) > 1:
            held = [(held[0][0], [b"MULTI"]), *held, (held[-1][0], [b"EXEC"])]
        for db_index, argv in held:
            self.propagate(db_index, argv)

    def key_expired(self, db: Database, key: bytes) -> None:
        self.expired_keys += 1
        for hook in self._expired_hooks:
            hook(db, key)

    def active_expire_cycle(self, budget_seconds: float = ACTIVE_EXPIRE_BUDGET_SECONDS) -> int:
        deadline = time.monotonic() + budget_seconds
        removed = 0
        for db in self.dbs:
            if db.expires:
                removed += db.expire_due(deadline)
            if time.monotonic() > deadline:
                break
        return removed

    def key_count(self) -> int:
        return sum(len(db) for db in self.dbs)


class ScanCursors:
    """SCAN-family cursors over snapshots, so that a full iteration returns every element that
    was there from its start to its end at least once (Redis's guarantee), with a Python dict
    underneath. A cursor is generation << 32 | position; a generation is a snapshot of the keys
    taken when a scan starts at 0. The newest SCAN_GENERATIONS_KEPT snapshots are kept; a cursor
    of a forgotten one restarts from a new snapshot, which may repeat elements but never skips.
    """

    def __init__(self) -> None:
        self._snapshots: dict[int, list[Any]] = {}
        self._next_generation = 1

    def page(self, cursor: int, count: int, snapshot: Callable[[], list[Any]]) -> tuple[int, list[Any]]:
        """(next cursor, items) for one SCAN call."""
        generation, position = cursor >> 32, cursor & 0xFFFFFFFF
        items = self._snapshots.get(generation) if cursor else None
        if items is None:
            items = snapshot()
            if len(items) <= count:
                return 0, items
            generation = self._remember(items)
            position = 0
        page = items[position : position + count]
        position += count
        if position >= len(items):
            self._snapshots.pop(generation, None)
            return 0, page
        return generation << 32 | position, page

    def _remember(self, items: list[Any]) -> int:
        generation = self._next_generation
        self._next_generation = generation + 1 if generation < 0xFFFFFFFF else 1
        self._snapshots[generation] = items
        while len(self._snapshots) > SCAN_GENERATIONS_KEPT:
            del self._snapshots[next(iter(self._snapshots))]
        return generation
