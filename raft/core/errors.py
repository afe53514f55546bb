"""Exceptions the Raft core raises at its caller. Each names what happened."""

from __future__ import annotations


class RaftError(Exception):
    """Base of every error raised by raft.core."""


class NotLeader(RaftError):
    """The request needs the leader and this node is not it; `leader` is the known leader or 0."""

    def __init__(self, leader: int, message: str = "") -> None:
        self.leader = leader
        super().__init__(message or (f"not the leader; the leader is {leader}" if leader else "no leader is known"))


class ProposalDropped(RaftError):
    """The leader refused a proposal (transfer in progress, removed from the cluster, too much uncommitted)."""


class ConfChangeRefused(RaftError):
    """A membership change that is not allowed now (another pending, learner behind, would leave no voter)."""


class TransferRefused(RaftError):
    """Leadership cannot be transferred to that node."""


class InvalidMessage(RaftError):
    """A message that cannot come from a correct peer (entries out of order, missing fields, ...).

    The node's state is untouched; the caller should log it and drop the connection it came on.
    """


class ReadyMisuse(RaftError):
    """The Ready/advance protocol was not followed (sent before persisting, advanced twice, ...)."""


class InvalidConfig(RaftError):
    """A Config value that cannot work (election timeout not above the heartbeat, ...)."""


class InvariantViolated(RaftError):
    """The core found its own state impossible (a committed entry would be overwritten, ...).

    This means a bug or storage that lost acknowledged data; the node must stop.
    """
