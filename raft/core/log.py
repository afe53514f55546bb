"""The in-memory Raft log of one node: a snapshot boundary, the entries after it, and four cursors.

    snapshot.index < applied <= applying <= committed <= last_index
                     persisted <= handed <= last_index

`handed` is how far entries were handed to the caller for persistence, `persisted` how far the
caller confirmed (advance). A conflicting append that truncates the suffix pulls both back, so a
Ready still being written can never make a replaced entry count as durable.
"""

from __future__ import annotations

from raft.core.errors import InvariantViolated
from raft.core.types import Entry, SnapshotMeta, entry_size


class RaftLog:
    """Entries after the latest snapshot, with commit, apply and persistence cursors."""

    __slots__ = ("applied", "applying", "committed", "entries", "handed", "persisted", "snapshot")

    def __init__(self, snapshot: SnapshotMeta, entries: list[Entry], committed: int) -> None:
        self.snapshot = snapshot
        self.entries = [e for e in entries if e.index > snapshot.index]
        for offset, entry in enumerate(self.entries):
            if entry.index != snapshot.index + 1 + offset:
                raise InvariantViolated(f"log is not contiguous at index {entry.index} after snapshot {snapshot.index}")
        last = self.last_index()
        if committed > last:
            raise InvariantViolated(f"hard state commit {committed} is beyond the last log index {last}")
        self.committed = max(committed, snapshot.index)
        self.applied = snapshot.index
        self.applying = snapshot.index
        self.persisted = last
        self.handed = last

    # --- reading -----------------------------------------------------------------------------

    def first_index(self) -> int:
        return self.snapshot.index + 1

    def last_index(self) -> int:
        return self.snapshot.index + len(self.entries)

    def last_term(self) -> int:
        return self.entries[-1].term if self.entries else self.snapshot.term

    def term(self, index: int) -> int | None:
        """The term of the entry at `index`, or None when it is compacted away or not there yet."""
        offset = index - self.snapshot.index - 1
        if 0 <= offset < len(self.entries):
            return self.entries[offset].term
        if offset == -1:
            return self.snapshot.term
        return None

    def entry(self, index: int) -> Entry:
        return self.entries[index - self.snapshot.index - 1]

    def is_up_to_date(self, last_index: int, last_term: int) -> bool:
        """Election restriction (thesis 3.6.1): is a log ending at (last_index, last_term) at least as new?"""
        mine = self.last_term()
        return last_term > mine or (last_term == mine and last_index >= self.last_index())

    def slice(self, lo: int, max_bytes: int) -> list[Entry]:
        """Entries from `lo` on, cut after `max_bytes` (always at least one when any exists)."""
        start = lo - self.snapshot.index - 1
        if start < 0:
            raise InvariantViolated(f"entries from {lo} are compacted (first index {self.first_index()})")
        if start >= len(self.entries):
            return []
        end = start + 1
        size = entry_size(self.entries[start])
        while end < len(self.entries):
            size += entry_size(self.entries[end])
            if size > max_bytes:
                break
            end += 1
        return self.entries[start:end]

    def find_conflict(self, entries: tuple[Entry, ...]) -> int:
        """Index of the first of `entries` whose term differs from ours (or that we lack); 0 if none."""
        for entry in entries:
            if entry.index > self.snapshot.index and self.term(entry.index) != entry.term:
                return entry.index
        return 0

    def find_conflict_by_term(self, index: int, term: int) -> tuple[int, int]:
        """The largest index <= `index` whose term is <= `term`, with that term (fast backtracking).

        A log's terms never decrease, so no index above the answer can match an entry of `term`.
        Returns (snapshot index, 0) when the answer lies in the compacted prefix.
        """
        index = min(index, self.last_index())
        while index > self.snapshot.index:
            entry_term = self.term(index)
            if entry_term is not None and entry_term <= term:
                return index, entry_term
            index -= 1
        return self.snapshot.index, 0

    # --- writing -----------------------------------------------------------------------------

    def append(self, entries: list[Entry] | tuple[Entry, ...]) -> None:
        """Append `entries`, first truncating our suffix from entries[0].index if we have it."""
        if not entries:
            return
        after = entries[0].index
        if after <= self.committed:
            raise InvariantViolated(f"refusing to overwrite committed entry {after} (commit is {self.committed})")
        last = self.last_index()
        if after > last + 1:
            raise InvariantViolated(f"append at {after} leaves a gap after last index {last}")
        if after <= last:
            del self.entries[after - self.snapshot.index - 1 :]
            self.persisted = min(self.persisted, after - 1)
            self.handed = min(self.handed, after - 1)
        self.entries.extend(entries)

    def commit_to(self, index: int) -> bool:
        if index <= self.committed:
            return False
        if index > self.last_index():
            raise InvariantViolated(f"commit {index} is beyond the last log index {self.last_index()}")
        self.committed = index
        return True

    def restore(self, snapshot: SnapshotMeta) -> None:
        """Replace the whole log by a snapshot received from the leader."""
        self.snapshot = snapshot
        self.entries = []
        self.committed = snapshot.index
        self.applying = max(self.applying, snapshot.index)
        self.handed = snapshot.index
        self.persisted = 0  # nothing of the new log is durable until the snapshot is persisted

    def compact(self, snapshot: SnapshotMeta) -> None:
        """Drop the entries up to a snapshot the application took at an applied index."""
        drop = snapshot.index - self.snapshot.index
        del self.entries[:drop]
        self.snapshot = snapshot

    # --- the Ready cycle ---------------------------------------------------------------------

    def unstable_entries(self) -> list[Entry]:
        """Entries not yet handed out for persistence."""
        return self.entries[self.handed - self.snapshot.index :]

    def has_unapplied(self) -> bool:
        return self.committed > self.applying

    def next_committed(self, max_bytes: int) -> list[Entry]:
        """Committed entries not yet handed out for applying, cut at `max_bytes`."""
        if self.committed <= self.applying:
            return []
        start = self.applying - self.snapshot.index
        stop = self.committed - self.snapshot.index
        if stop - start == 1:
            return [self.entries[start]]
        out: list[Entry] = []
        size = 0
        for entry in self.entries[start:stop]:
            size += entry_size(entry)
            if out and size > max_bytes:
                break
            out.append(entry)
        return out

    def stable_to(self, index: int, term: int) -> None:
        """The caller persisted entries up to (index, term); count them durable if still ours."""
        if index > self.persisted and self.term(index) == term:
            self.persisted = index
            self.handed = max(self.handed, index)
