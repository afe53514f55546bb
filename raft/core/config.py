"""Parameters of one Raft node. Times are in ticks: the caller decides how long a tick is."""

from __future__ import annotations

from dataclasses import dataclass

from raft.core.errors import InvalidConfig
from raft.core.types import Mutation

MIB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Config:
    """How one node behaves. `id` must be positive and unique in the cluster.

    election_ticks: a follower that hears no leader for a random number of ticks in
      [election_ticks, 2 * election_ticks) starts an election.
    heartbeat_ticks: a leader sends heartbeats this often; must be below election_ticks.
    pre_vote: ask for votes without bumping the term first (thesis 9.6), so a node that was cut
      off cannot disrupt a working leader when it comes back.
    check_quorum: a leader that has not heard from a majority within election_ticks steps down,
      and voters that heard from a leader within that time ignore vote requests (leader lease).
    max_msg_bytes: entries per APPEND are cut at this many bytes (at least one entry is sent).
    max_inflight_msgs / max_inflight_bytes: flow control per follower while replicating.
    max_uncommitted_bytes: a leader drops proposals beyond this much uncommitted data (0: no limit).
    max_apply_bytes: committed entries handed out per Ready are cut at this many bytes.
    snapshot_chunk_bytes / snapshot_inflight_chunks: InstallSnapshot chunk size and window.
    learner_catch_up_entries: a learner may be promoted only when at most this many entries behind.
    forward_proposals: a follower forwards proposals and ReadIndex requests to its leader.
    mutation: a deliberate bug for the simulator's own tests; leave at Mutation.NONE.
    """

    id: int
    election_ticks: int = 10
    heartbeat_ticks: int = 1
    pre_vote: bool = True
    check_quorum: bool = True
    max_msg_bytes: int = 1 * MIB
    max_inflight_msgs: int = 256
    max_inflight_bytes: int = 64 * MIB
    max_uncommitted_bytes: int = 0
    max_apply_bytes: int = 64 * MIB
    snapshot_chunk_bytes: int = 1 * MIB
    snapshot_inflight_chunks: int = 4
    learner_catch_up_entries: int = 100
    forward_proposals: bool = True
    mutation: Mutation = Mutation.NONE

    def validate(self) -> None:
        """Raise InvalidConfig naming the first value that cannot work."""
        if self.id <= 0:
            raise InvalidConfig(f"id must be a positive integer, got {self.id}")
        if self.heartbeat_ticks <= 0:
            raise InvalidConfig(f"heartbeat_ticks must be positive, got {self.heartbeat_ticks}")
        if self.election_ticks <= self.heartbeat_ticks:
            raise InvalidConfig(
                f"election_ticks ({self.election_ticks}) must be greater than heartbeat_ticks ({self.heartbeat_ticks})"
            )
        if self.max_inflight_msgs <= 0:
            raise InvalidConfig(f"max_inflight_msgs must be positive, got {self.max_inflight_msgs}")
        if self.max_inflight_bytes < self.max_msg_bytes:
            raise InvalidConfig("max_inflight_bytes must be at least max_msg_bytes")
        if self.snapshot_chunk_bytes <= 0 or self.snapshot_inflight_chunks <= 0:
            raise InvalidConfig("snapshot_chunk_bytes and snapshot_inflight_chunks must be positive")
        if self.max_uncommitted_bytes < 0 or self.max_msg_bytes < 0 or self.max_apply_bytes <= 0:
            raise InvalidConfig("byte limits must not be negative (max_apply_bytes must be positive)")
        if self.learner_catch_up_entries < 0:
            raise InvalidConfig("learner_catch_up_entries must not be negative")
