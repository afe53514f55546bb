"""Client sessions: apply each client request once even when the client retries it (thesis 6.3).

A client numbers its requests 1, 2, 3, ... under a client id and retries a request with the same
number until it gets an answer. A retried proposal may be committed twice; the state machine
asks `check()` before applying an entry and `record()`s the answer after, so the second copy
is skipped and the first answer is returned again. The table is part of the replicated state:
every node builds it from the same log, and it goes into snapshots (`to_bytes`/`from_bytes`).

Sessions are dropped least-recently-used beyond `max_clients`, deterministically (by log order).
A request from an unknown client is accepted only as its first (seq 1); a later number means the
session was dropped and is answered SESSION_EXPIRED: the client must start over with a new id.
"""

from __future__ import annotations

import enum
from typing import NamedTuple

import msgpack

from raft.core.codec import CodecError


class Verdict(enum.Enum):
    NEW = "new"  # apply it
    DUPLICATE = "duplicate"  # applied already: answer with the recorded response
    STALE = "stale"  # older than the last request of this client: its answer is gone
    SESSION_EXPIRED = "session_expired"  # unknown client past its first request


class Check(NamedTuple):
    verdict: Verdict
    response: bytes = b""


class ClientSessions:
    """The last request number and answer of each client, in least-recently-used order."""

    def __init__(self, *, max_clients: int = 100_000, dedup: bool = True) -> None:
        if max_clients <= 0:
            raise ValueError("max_clients must be positive")
        self.max_clients = max_clients
        self._dedup = dedup  # False only for the simulator's mutation test
        self._sessions: dict[str, tuple[int, bytes]] = {}

    def __len__(self) -> int:
        return len(self._sessions)

    def check(self, client_id: str, seq: int) -> Check:
        """What to do with request `seq` of `client_id`. Requests without a client id are always NEW."""
        if not client_id or not self._dedup:
            return Check(Verdict.NEW)
        session = self._sessions.get(client_id)
        if session is None:
            return Check(Verdict.NEW) if seq == 1 else Check(Verdict.SESSION_EXPIRED)
        last_seq, response = session
        if seq == last_seq:
            return Check(Verdict.DUPLICATE, response)
        if seq < last_seq:
            return Check(Verdict.STALE)
        return Check(Verdict.NEW)

    def record(self, client_id: str, seq: int, response: bytes) -> None:
        """Remember the answer to a NEW request."""
        if not client_id:
            return
        self._sessions.pop(client_id, None)
        self._sessions[client_id] = (seq, response)
        while len(self._sessions) > self.max_clients:
            del self._sessions[next(iter(self._sessions))]

    def to_bytes(self) -> bytes:
        return msgpack.packb([[c, s, r] for c, (s, r) in self._sessions.items()], use_bin_type=True)  # type: ignore[no-any-return]

    @classmethod
    def from_bytes(cls, data: bytes, *, max_clients: int = 100_000, dedup: bool = True) -> ClientSessions:
        sessions = cls(max_clients=max_clients, dedup=dedup)
        try:
            rows = msgpack.unpackb(data, raw=False)
        except Exception as exc:
            raise CodecError(f"client sessions: not valid msgpack ({exc})") from None
        if type(rows) is not list:
            raise CodecError("client sessions: expected a list")
        for row in rows:
            if (
                type(row) is not list
                or len(row) != 3
                or type(row[0]) is not str
                or type(row[1]) is not int
                or type(row[2]) is not bytes
            ):
                raise CodecError(f"client sessions: bad row {row!r}")
            sessions._sessions[row[0]] = (row[1], row[2])
        return sessions
