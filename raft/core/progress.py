"""What a leader knows about each follower's log, and the flow control that paces replication.

PROBE: the leader does not know where the follower's log ends; it sends one APPEND and waits
(for the answer or a heartbeat answer) before the next. REPLICATE: the follower is known to
match up to `match`; APPENDs are pipelined, bounded by an in-flight window in messages and bytes.
SNAPSHOT: the follower needs the snapshot; it is sent in chunks with a byte window.
"""

from __future__ import annotations

import enum
from collections import deque


class ProgressState(enum.IntEnum):
    PROBE = 0
    REPLICATE = 1
    SNAPSHOT = 2


class Inflights:
    """APPENDs sent and not yet acknowledged: their last index and size, oldest first."""

    __slots__ = ("_queue", "bytes", "max_bytes", "max_count")

    def __init__(self, max_count: int, max_bytes: int) -> None:
        self._queue: deque[tuple[int, int]] = deque()
        self.max_count = max_count
        self.max_bytes = max_bytes
        self.bytes = 0

    def add(self, last_index: int, size: int) -> None:
        self._queue.append((last_index, size))
        self.bytes += size

    def free_le(self, index: int) -> None:
        """Forget every message whose entries all lie at or below `index` (acknowledged)."""
        queue = self._queue
        while queue and queue[0][0] <= index:
            self.bytes -= queue.popleft()[1]

    def full(self) -> bool:
        return len(self._queue) >= self.max_count or self.bytes >= self.max_bytes

    def count(self) -> int:
        return len(self._queue)

    def reset(self) -> None:
        self._queue.clear()
        self.bytes = 0


class Progress:
    """One follower (or learner) as the leader sees it."""

    __slots__ = (
        "inflights",
        "is_learner",
        "match",
        "next",
        "paused",
        "pending_snapshot",
        "read_ack",
        "recent_active",
        "sent_commit",
        "snap_acked",
        "snap_done_sent",
        "snap_sent",
        "state",
    )

    def __init__(self, next_index: int, inflights: Inflights, *, is_learner: bool = False) -> None:
        self.match = 0
        self.next = next_index
        self.state = ProgressState.PROBE
        self.paused = False  # PROBE: an APPEND is out, wait for an answer or a heartbeat answer
        self.recent_active = False
        self.inflights = inflights
        self.is_learner = is_learner
        self.sent_commit = 0  # the highest commit index sent to it
        self.read_ack = 0  # the highest ReadIndex round it confirmed
        self.pending_snapshot = 0  # SNAPSHOT: index of the snapshot being sent
        self.snap_sent = 0  # SNAPSHOT: bytes sent so far
        self.snap_acked = 0  # SNAPSHOT: bytes the follower confirmed
        self.snap_done_sent = False

    def _reset(self, state: ProgressState) -> None:
        self.paused = False
        self.pending_snapshot = 0
        self.state = state
        self.inflights.reset()

    def become_probe(self) -> None:
        if self.state == ProgressState.SNAPSHOT:
            pending = self.pending_snapshot
            self._reset(ProgressState.PROBE)
            self.next = max(self.match + 1, pending + 1)
        else:
            self._reset(ProgressState.PROBE)
            self.next = self.match + 1

    def become_replicate(self) -> None:
        self._reset(ProgressState.REPLICATE)
        self.next = self.match + 1

    def become_snapshot(self, snapshot_index: int) -> None:
        self._reset(ProgressState.SNAPSHOT)
        self.pending_snapshot = snapshot_index
        self.snap_sent = 0
        self.snap_acked = 0
        self.snap_done_sent = False

    def is_paused(self) -> bool:
        if self.state == ProgressState.PROBE:
            return self.paused
        if self.state == ProgressState.REPLICATE:
            return self.inflights.full()
        return True

    def maybe_update(self, index: int) -> bool:
        """An APPEND_RESP acknowledged `index`; False if it tells nothing new."""
        if index <= self.match:
            return False
        self.match = index
        self.next = max(self.next, index + 1)
        self.paused = False
        return True

    def maybe_decrease_to(self, rejected: int, hint: int) -> bool:
        """An APPEND at `rejected` was refused; move `next` back (False if the refusal is stale)."""
        if self.state == ProgressState.REPLICATE:
            if rejected <= self.match:
                return False
            self.next = self.match + 1
            return True
        if self.state == ProgressState.SNAPSHOT:
            return False
        if self.next - 1 != rejected:
            return False
        self.next = max(min(rejected, hint + 1), self.match + 1)
        self.paused = False
        return True

    def describe(self) -> str:
        text = f"{self.state.name} match={self.match} next={self.next}"
        if self.is_learner:
            text += " learner"
        if self.is_paused():
            text += " paused"
        if self.pending_snapshot:
            text += f" pending_snap={self.pending_snapshot}"
        if not self.recent_active:
            text += " inactive"
        if self.inflights.count():
            text += f" inflight={self.inflights.count()}"
        return text
