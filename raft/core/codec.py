"""msgpack encodings of messages, entries, hard state, snapshot metadata and configuration entries.

Pure functions, no IO. Decoders validate every field and raise CodecError on anything malformed,
so bytes from the network or a damaged file never reach the core as a half-built value.
"""

from __future__ import annotations

from typing import Any

import msgpack

from raft.core.errors import RaftError
from raft.core.types import (
    ConfChange,
    ConfChangeOp,
    ConfState,
    Entry,
    EntryKind,
    HardState,
    Message,
    MessageType,
    SnapshotMeta,
)


class CodecError(RaftError):
    """Bytes that do not decode to a valid value."""


def _pack(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)  # type: ignore[no-any-return]


def _unpack(data: bytes, what: str) -> Any:
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=True, use_list=True)
    except Exception as exc:  # msgpack raises several unrelated types on bad input
        raise CodecError(f"{what}: not valid msgpack ({exc.__class__.__name__}: {exc})") from None


def _int(value: Any, what: str) -> int:
    if type(value) is not int or value < 0:
        raise CodecError(f"{what}: expected a non-negative integer, got {value!r}")
    return value


def _bool(value: Any, what: str) -> bool:
    if type(value) is not bool:
        raise CodecError(f"{what}: expected a boolean, got {value!r}")
    return value


def _bytes(value: Any, what: str) -> bytes:
    if type(value) is not bytes:
        raise CodecError(f"{what}: expected bytes, got {type(value).__name__}")
    return value


def _list(value: Any, what: str, length: int | None = None) -> list[Any]:
    if type(value) is not list or (length is not None and len(value) != length):
        raise CodecError(f"{what}: expected a list of {length} items" if length else f"{what}: expected a list")
    return value


def _ids(value: Any, what: str) -> tuple[int, ...]:
    return tuple(_int(item, what) for item in _list(value, what))


# --- entries ---------------------------------------------------------------------------------


def entry_to_list(entry: Entry) -> list[Any]:
    return [entry.term, entry.index, int(entry.kind), entry.data, entry.client_id, entry.seq]


def entry_from_list(value: Any) -> Entry:
    term, index, kind, data, client_id, seq = _list(value, "entry", 6)
    if type(client_id) is not str:
        raise CodecError("entry: client_id must be a string")
    try:
        entry_kind = EntryKind(_int(kind, "entry kind"))
    except ValueError:
        raise CodecError(f"entry: unknown kind {kind!r}") from None
    return Entry(
        _int(term, "entry term"),
        _int(index, "entry index"),
        entry_kind,
        _bytes(data, "entry data"),
        client_id,
        _int(seq, "entry seq"),
    )


def encode_entry(entry: Entry) -> bytes:
    return _pack(entry_to_list(entry))


def decode_entry(data: bytes) -> Entry:
    return entry_from_list(_unpack(data, "entry"))


# --- configuration -----------------------------------------------------------------------------


def encode_conf_entry(conf: ConfState, change: ConfChange) -> bytes:
    """The payload of a CONF_CHANGE entry: the whole new configuration, and the change that made it."""
    return _pack([list(conf.voters), list(conf.learners), int(change.op), change.node_id])


def decode_conf_entry(data: bytes) -> tuple[ConfState, ConfChange]:
    voters, learners, op, node_id = _list(_unpack(data, "configuration entry"), "configuration entry", 4)
    try:
        change_op = ConfChangeOp(_int(op, "conf change op"))
    except ValueError:
        raise CodecError(f"configuration entry: unknown op {op!r}") from None
    conf = ConfState(_ids(voters, "voters"), _ids(learners, "learners"))
    return conf, ConfChange(change_op, _int(node_id, "conf change node"))


def meta_to_list(meta: SnapshotMeta) -> list[Any]:
    return [meta.index, meta.term, list(meta.conf.voters), list(meta.conf.learners)]


def meta_from_list(value: Any) -> SnapshotMeta:
    index, term, voters, learners = _list(value, "snapshot metadata", 4)
    conf = ConfState(_ids(voters, "voters"), _ids(learners, "learners"))
    return SnapshotMeta(_int(index, "snapshot index"), _int(term, "snapshot term"), conf)


def encode_snapshot_meta(meta: SnapshotMeta) -> bytes:
    return _pack(meta_to_list(meta))


def decode_snapshot_meta(data: bytes) -> SnapshotMeta:
    return meta_from_list(_unpack(data, "snapshot metadata"))


def encode_hard_state(state: HardState) -> bytes:
    return _pack([state.term, state.vote, state.commit])


def decode_hard_state(data: bytes) -> HardState:
    term, vote, commit = _list(_unpack(data, "hard state"), "hard state", 3)
    return HardState(_int(term, "term"), _int(vote, "vote"), _int(commit, "commit"))


# --- messages ----------------------------------------------------------------------------------


def encode_message(m: Message) -> bytes:
    """One message as msgpack; the transport frames it (length prefix)."""
    return _pack(
        [
            int(m.type),
            m.src,
            m.dst,
            m.term,
            m.log_term,
            m.index,
            [entry_to_list(e) for e in m.entries],
            m.commit,
            m.reject,
            m.reject_hint,
            None if m.snapshot is None else meta_to_list(m.snapshot),
            m.offset,
            m.data,
            m.done,
            m.context,
            m.read_seq,
            m.force,
        ]
    )


def decode_message(data: bytes) -> Message:
    fields = _list(_unpack(data, "message"), "message", 17)
    (
        kind,
        src,
        dst,
        term,
        log_term,
        index,
        entries,
        commit,
        reject,
        reject_hint,
        snapshot,
        offset,
        payload,
        done,
        context,
        read_seq,
        force,
    ) = fields
    try:
        message_type = MessageType(_int(kind, "message type"))
    except ValueError:
        raise CodecError(f"message: unknown type {kind!r}") from None
    return Message(
        type=message_type,
        src=_int(src, "src"),
        dst=_int(dst, "dst"),
        term=_int(term, "term"),
        log_term=_int(log_term, "log_term"),
        index=_int(index, "index"),
        entries=tuple(entry_from_list(e) for e in _list(entries, "entries")),
        commit=_int(commit, "commit"),
        reject=_bool(reject, "reject"),
        reject_hint=_int(reject_hint, "reject_hint"),
        snapshot=None if snapshot is None else meta_from_list(snapshot),
        offset=_int(offset, "offset"),
        data=_bytes(payload, "data"),
        done=_bool(done, "done"),
        context=_bytes(context, "context"),
        read_seq=_int(read_seq, "read_seq"),
        force=_bool(force, "force"),
    )
