"""RESP2 and RESP3: request parsing and reply encoding. No keys, no sockets.

Requests are parsed by hiredis.Reader (C speed). hiredis trusts the lengths it is given, so a
`RequestGuard` walks the frame headers itself whenever that matters: a chunk that may declare a
huge aggregate (hiredis would preallocate it) and a chunk that leaves a frame incomplete (a huge
bulk length must be refused when its header arrives, not after 512 MB were buffered). Complete,
ordinary pipelines never pay for it. Inline commands (`PING\\r\\n`, as redis-benchmark and telnet
send) are split here too.

Replies are Python values turned into bytes by `encode`: bytes are bulk strings, ints integers,
None the null, lists arrays; the wrapper types below say what plain Python cannot (a status line,
a map, a set, a double, a push). RESP2 flattens maps and sets into arrays and sends doubles as bulk
strings, as Redis does.
"""

from __future__ import annotations

import math
import re
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import hiredis

MAX_MULTIBULK_COUNT = 1024 * 1024
MAX_INLINE_SIZE = 64 * 1024
# Headers hiredis would act on before the frame is complete: an array ("*") or a push (">") of a
# million elements or more makes it allocate and, on release, walk every slot. Other aggregate
# types either allocate lazily (maps, sets) or fail at once (attributes: MemoryError, caught).
_BIG_ARRAY = re.compile(rb"\*\+?\d{7}")  # literal first bytes: both searched at memchr speed
_BIG_PUSH = re.compile(rb">\+?\d{7}")
_AGGREGATE_MARKERS = frozenset((b"%", b"~", b">", b"|"))


def _may_declare_big_count(data: bytes) -> bool:
    """Whether `data` may hold such a header (cheap; true for some harmless data too)."""
    if _BIG_ARRAY.search(data) is not None:
        return True
    return data.find(b">") >= 0 and _BIG_PUSH.search(data) is not None


class ProtocolError(Exception):
    """The client broke the protocol: answer with this error, then close the connection.

    `offset` is where in the read the offending header starts: what comes before it is valid and
    is still executed, as Redis does."""

    def __init__(self, message: str, offset: int = 0) -> None:
        super().__init__(message)
        self.offset = offset


# -- reply types ------------------------------------------------------------------------------


class Status(bytes):
    """A simple string reply (`+OK`)."""


class ErrorReply(Exception):
    """An error reply (`-ERR ...`); raised by command handlers, encoded as `-<message>`."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Map(list[tuple[Any, Any]]):
    """A RESP3 map (key/value pairs); a flat array in RESP2."""


class Set(list[Any]):
    """A RESP3 set; an array in RESP2."""


class Push(list[Any]):
    """A RESP3 push message (pub/sub); an array in RESP2."""


class Double(float):
    """A RESP3 double; a bulk string in RESP2 (formatted as Redis formats scores)."""


class Verbatim(bytes):
    """A RESP3 verbatim text string (INFO, CLIENT LIST); a bulk string in RESP2."""


class _NullArray:
    """The null array (`*-1` in RESP2): BLPOP's timeout, EXEC of a failed WATCH."""

    __slots__ = ()


NULL_ARRAY = _NullArray()
OK = Status(b"OK")
QUEUED = Status(b"QUEUED")
PONG = Status(b"PONG")


def format_double(value: float) -> bytes:
    """Redis's shortest round-trip form: 1 not 1.0, 0.1, 1e+20, inf, -inf."""
    if math.isinf(value):
        return b"inf" if value > 0 else b"-inf"
    if value.is_integer() and abs(value) < 1e17:
        return b"%d" % int(value)
    return repr(value).encode()


# -- encoding ---------------------------------------------------------------------------------

_ENCODED_INTS = [b":%d\r\n" % number for number in range(-1, 1025)]
_STATUS_WIRE = {status: b"+%s\r\n" % status for status in (OK, QUEUED, PONG)}


def encode(value: Any, resp3: bool) -> bytes:
    """The wire form of one reply."""
    kind = type(value)
    if kind is bytes:
        return b"$%d\r\n%s\r\n" % (len(value), value)
    if kind is int:
        if -1 <= value <= 1023:
            encoded: bytes = _ENCODED_INTS[value + 1]
            return encoded
        return b":%d\r\n" % value
    if value is None:
        return b"_\r\n" if resp3 else b"$-1\r\n"
    if kind is Status:
        return _STATUS_WIRE.get(value) or b"+%s\r\n" % value
    out: list[bytes] = []
    _encode_into(value, resp3, out)
    return b"".join(out)


def encode_error(message: str) -> bytes:
    return b"-%s\r\n" % message.replace("\r", " ").replace("\n", " ").encode()


def _encode_into(value: Any, resp3: bool, out: list[bytes]) -> None:
    kind = type(value)
    if kind is bytes:
        out.append(b"$%d\r\n%s\r\n" % (len(value), value))
    elif kind is int:
        out.append(b":%d\r\n" % value)
    elif value is None:
        out.append(b"_\r\n" if resp3 else b"$-1\r\n")
    elif kind is Status:
        out.append(b"+%s\r\n" % value)
    elif kind is list or kind is tuple or (kind is Push and not resp3):
        out.append(b"*%d\r\n" % len(value))
        for item in value:
            _encode_into(item, resp3, out)
    elif kind is Map:
        out.append((b"%%%d\r\n" if resp3 else b"*%d\r\n") % (len(value) if resp3 else 2 * len(value)))
        for key, item in value:
            _encode_into(key, resp3, out)
            _encode_into(item, resp3, out)
    elif kind is Set:
        out.append((b"~%d\r\n" if resp3 else b"*%d\r\n") % len(value))
        for item in value:
            _encode_into(item, resp3, out)
    elif kind is Push:
        out.append(b">%d\r\n" % len(value))
        for item in value:
            _encode_into(item, resp3, out)
    elif kind is Double or kind is float:
        text = format_double(value)
        out.append(b",%s\r\n" % text if resp3 else b"$%d\r\n%s\r\n" % (len(text), text))
    elif kind is bool:
        out.append((b"#t\r\n" if value else b"#f\r\n") if resp3 else (b":1\r\n" if value else b":0\r\n"))
    elif kind is Verbatim:
        if resp3:
            out.append(b"=%d\r\ntxt:%s\r\n" % (len(value) + 4, value))
        else:
            out.append(b"$%d\r\n%s\r\n" % (len(value), value))
    elif value is NULL_ARRAY:
        out.append(b"_\r\n" if resp3 else b"*-1\r\n")
    elif isinstance(value, ErrorReply):
        out.append(encode_error(value.message))
    elif isinstance(value, str):
        data = value.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    else:
        raise TypeError(f"cannot encode {kind.__name__} as a reply")


# -- request parsing --------------------------------------------------------------------------

Frame = list[bytes]


@dataclass
class _Walk:
    """Where the guard stands in the stream: at a frame boundary, or inside a frame."""

    elements_left: int = 0  # bulk strings still expected in the current multibulk frame
    bulk_left: int = 0  # payload bytes (with the trailing CRLF) still to skip
    header: bytes = b""  # a header line cut by the end of a chunk
    inline: bool = False  # inside an inline command line

    @property
    def at_boundary(self) -> bool:
        return not (self.elements_left or self.bulk_left or self.header or self.inline)


@dataclass
class ProtocolLimits:
    """The request limits, shared by every connection so that CONFIG SET changes them at once."""

    max_bulk_length: int
    max_query_buffer: int


class RequestGuard:
    """Validates frame headers without building frames, so that hiredis is never handed a lie."""

    def __init__(self, limits: ProtocolLimits) -> None:
        self.limits = limits
        self.state = _Walk()
        # Where the last walk met its first inline command at a frame boundary (hiredis cannot
        # parse those), if it did.
        self.inline_at: int | None = None

    def walk(self, data: bytes) -> None:
        """Advance over `data`; raise ProtocolError at the first header Redis would refuse."""
        state = self.state
        self.inline_at = None
        pos = 0
        end = len(data)
        while pos < end:
            if state.bulk_left:
                step = min(state.bulk_left, end - pos)
                state.bulk_left -= step
                pos += step
                continue
            if state.inline:
                newline = data.find(b"\n", pos)
                if newline < 0:
                    state.header += data[pos:]
                    if len(state.header) > MAX_INLINE_SIZE:
                        raise ProtocolError("Protocol error: too big inline request")
                    return
                state.inline = False
                state.header = b""
                pos = newline + 1
                continue
            newline = data.find(b"\n", pos)
            # Where the header begins in this read (0 when it began in an earlier one).
            line_start = 0 if state.header else pos
            try:
                if newline < 0:
                    state.header += data[pos:]
                    self._check_partial_header()
                    if state.inline and self.inline_at is None:
                        self.inline_at = line_start
                    return
                line = state.header + data[pos:newline]
                state.header = b""
                pos = newline + 1
                if not self._header_line(line.rstrip(b"\r")) and self.inline_at is None:
                    self.inline_at = line_start
            except ProtocolError as error:
                error.offset = line_start
                raise

    def _check_partial_header(self) -> None:
        header = self.state.header
        if not self.state.elements_left and header[:1] != b"*":
            self.state.inline = True
            if len(header) > MAX_INLINE_SIZE:
                raise ProtocolError("Protocol error: too big inline request")
        elif len(header) > 32:
            kind = "bulk" if self.state.elements_left else "multibulk"
            raise ProtocolError(f"Protocol error: invalid {kind} length")

    def _header_line(self, line: bytes) -> bool:
        """Check one header line; False when it was a whole inline command."""
        state = self.state
        if state.elements_left:
            if line[:1] != b"$":
                got = line[:1].decode("latin-1") or " "
                raise ProtocolError(f"Protocol error: expected '$', got '{got}'")
            length = _parse_length(line[1:])
            if length is None or length < 0 or length > self.limits.max_bulk_length:
                raise ProtocolError("Protocol error: invalid bulk length")
            state.elements_left -= 1
            state.bulk_left = length + 2
            return True
        if line[:1] != b"*":
            if line[:1] in _AGGREGATE_MARKERS:  # hiredis would take it for a map, set or push
                raise ProtocolError(f"Protocol error: expected '*', got '{line[:1].decode()}'")
            if len(line) > MAX_INLINE_SIZE:
                raise ProtocolError("Protocol error: too big inline request")
            return False  # a whole inline command: nothing to validate
        count = _parse_length(line[1:])
        if count is None or count > MAX_MULTIBULK_COUNT:
            raise ProtocolError("Protocol error: invalid multibulk length")
        state.elements_left = max(count, 0)
        return True


def _parse_length(digits: bytes) -> int | None:
    if not digits or len(digits) > 20:
        return None
    try:
        return int(digits)
    except ValueError:
        return None


def split_inline(line: bytes) -> Frame:
    """The arguments of an inline command, with Redis's quoting rules ("a b", 'c', \\x41)."""
    args: list[bytes] = []
    pos = 0
    length = len(line)
    while True:
        while pos < length and line[pos] in b" \t\r\n":
            pos += 1
        if pos >= length:
            return args
        current = bytearray()
        quote = 0
        while True:
            if pos >= length:
                if quote:
                    raise ProtocolError("Protocol error: unbalanced quotes in request")
                break
            char = line[pos]
            if quote == 0x22:  # inside "..."
                if char == 0x5C and pos + 3 < length and line[pos + 1] == 0x78 and _is_hex_pair(line, pos + 2):
                    current.append(int(line[pos + 2 : pos + 4], 16))
                    pos += 3
                elif char == 0x5C and pos + 1 < length:
                    pos += 1
                    current.append(_ESCAPES.get(line[pos], line[pos]))
                elif char == 0x22:
                    if pos + 1 < length and line[pos + 1] not in b" \t\r\n":
                        raise ProtocolError("Protocol error: unbalanced quotes in request")
                    pos += 1
                    break
                else:
                    current.append(char)
            elif quote == 0x27:  # inside '...'
                if char == 0x5C and pos + 1 < length and line[pos + 1] == 0x27:
                    pos += 1
                    current.append(0x27)
                elif char == 0x27:
                    if pos + 1 < length and line[pos + 1] not in b" \t\r\n":
                        raise ProtocolError("Protocol error: unbalanced quotes in request")
                    pos += 1
                    break
                else:
                    current.append(char)
            elif char in b" \t\r\n":
                break
            elif char in (0x22, 0x27):
                quote = char
            else:
                current.append(char)
            pos += 1
        args.append(bytes(current))


_ESCAPES = {ord("n"): 0x0A, ord("r"): 0x0D, ord("t"): 0x09, ord("b"): 0x08, ord("a"): 0x07}
_HEX = frozenset(b"0123456789abcdefABCDEF")


def _is_hex_pair(line: bytes, pos: int) -> bool:
    return line[pos] in _HEX and line[pos + 1] in _HEX


class RequestParser:
    """Bytes in, request frames out: hiredis parses, the guard validates when it matters.

    The parser knows whether the stream is at a frame boundary between two reads. While it is, a
    read goes straight to hiredis (the fast path), and a cheap check on the last frame tells
    whether the read ended on a boundary too. A huge length or count can only be in a frame that
    does not complete, so a read that ends inside a frame is walked by the guard (exact
    validation), and the guard walks every read, before hiredis sees it, until one ends on a
    boundary again. hiredis allocates an aggregate as soon as it reads its count, so a read with a
    count of seven digits or more anywhere is walked before hiredis sees it too (a regex search,
    rarely true). Inline commands are split here, at a boundary.

    Redis also takes inline commands between multibulk ones in one read (`redis-cli --pipe` ends
    its stream so). hiredis cannot: the read is split where the inline command starts and the rest
    is fed once hiredis has given out the frames before it. The guard finds that place in a walked
    read; on the fast path, the hiredis error that such a line causes sends us looking for it.

    `feed(data)` raises ProtocolError for what Redis would refuse; `frames()` yields the complete
    frames and may be left early (a blocked client), the rest staying buffered.
    """

    def __init__(self, limits: ProtocolLimits) -> None:
        self.reader = hiredis.Reader()
        self.guard = RequestGuard(limits)
        self.limits = limits
        self._tracking = False  # the guard walks every read (the stream is inside a frame)
        self._inline_frames: deque[Frame] = deque()
        self._inline_tail = b""
        self._carry = b""
        self._unchecked: bytes | None = None  # the last fast-path read, until its frames are out
        self._parsed = 0  # frames hiredis gave out of the last fast-path read
        self._pending: bytes | None = None  # the rest of a read, fed once hiredis is drained
        self._last_frame: Frame | None = None
        self._failure: ProtocolError | None = None  # found by the guard, raised after earlier frames

    def feed(self, data: bytes) -> None:
        if self._failure is not None:
            raise self._failure
        if self._unchecked is not None:  # frames() was left early: settle the previous read first
            self._enter_tracking(self._unchecked)
        if not self._tracking and (self._inline_tail or data[:1] != b"*"):
            data = self._split_inline(data)
            if not data:
                return
        scanned = self._carry + data
        self._carry = scanned[-12:]  # a count cut in two by the end of a read is still found
        if self._tracking or _may_declare_big_count(scanned):
            self._unchecked = None
            try:
                self.guard.walk(data)  # exact: raises on the first header Redis would refuse
            except ProtocolError as error:
                # Run what came before the bad header, then report it.
                self.reader.feed(data[: error.offset])
                self._failure = error
                return
            inline_at = self.guard.inline_at
            if inline_at is not None:  # hiredis gets what precedes the inline command, for now
                self._pending = data[inline_at:]
                data = data[:inline_at]
                self.guard.state = _Walk()
            self._tracking = not self.guard.state.at_boundary
        else:
            self._unchecked = data
            self._parsed = 0
        self._last_frame = None
        self.reader.feed(data)

    def frames(self) -> Iterator[Frame]:
        """Yield each complete frame received so far."""
        while True:
            while self._inline_frames:
                yield self._inline_frames.popleft()
            reader = self.reader
            while True:
                try:
                    frame = reader.gets()
                except hiredis.ProtocolError as exc:
                    if self._inline_follows():
                        break
                    raise ProtocolError(_redis_wording(str(exc))) from None
                except MemoryError:  # a huge declared count: hiredis could not even allocate it
                    raise ProtocolError("Protocol error: invalid multibulk length") from None
                if frame is False:
                    break
                self._parsed += 1
                if type(frame) is not list:
                    if frame is None:
                        continue  # *-1: Redis ignores a null multibulk
                    raise ProtocolError("Protocol error: expected '*', got a non-array request")
                if len(frame) > MAX_MULTIBULK_COUNT:
                    raise ProtocolError("Protocol error: invalid multibulk length")
                self._last_frame = frame
                yield frame
            if self._pending is None:
                break
            rest, self._pending = self._pending, None
            self.feed(rest)
        if self._failure is not None:
            raise self._failure
        unchecked = self._unchecked
        if unchecked is not None:
            self._unchecked = None
            last = self._last_frame
            if last is None or not _ends_with(unchecked, last):
                self._enter_tracking(unchecked)
        if reader.len() > self.limits.max_query_buffer:
            raise ProtocolError("Protocol error: query buffer limit exceeded")

    def _inline_follows(self) -> bool:
        """hiredis stumbled on the last fast-path read: if that is an inline command after the
        frames it gave out, start the read over from there (with a new hiredis reader)."""
        data = self._unchecked
        if data is None:
            return False
        offset = _offset_after_frames(data, self._parsed)
        if offset is None or offset >= len(data) or data[offset : offset + 1] in (b"*", *_AGGREGATE_MARKERS):
            return False
        self.reader = hiredis.Reader()
        self._unchecked = None
        self._pending = data[offset:]
        return True

    def _enter_tracking(self, data: bytes) -> None:
        """A fast-path read did not end on a frame boundary: walk it (it began on one)."""
        self._unchecked = None
        self.guard.state = _Walk()
        self.guard.walk(data)
        self._tracking = not self.guard.state.at_boundary

    def _split_inline(self, data: bytes) -> bytes:
        """Queue the inline commands leading `data`; return what is left (starting with `*`)."""
        data = self._inline_tail + data
        self._inline_tail = b""
        pos = 0
        while pos < len(data) and data[pos : pos + 1] != b"*":
            newline = data.find(b"\n", pos)
            if newline < 0:
                self._inline_tail = data[pos:]
                if len(self._inline_tail) > MAX_INLINE_SIZE:
                    raise ProtocolError("Protocol error: too big inline request")
                return b""
            if newline - pos > MAX_INLINE_SIZE:
                raise ProtocolError("Protocol error: too big inline request")
            args = split_inline(data[pos:newline])
            pos = newline + 1
            if args:
                self._inline_frames.append(args)
        return data[pos:]


def _offset_after_frames(data: bytes, count: int) -> int | None:
    """Where the first `count` multibulk frames of `data` end (they were parsed whole by hiredis
    already, so they are well formed); None if the data does not read so."""
    pos = 0
    try:
        for _ in range(count):
            if data[pos : pos + 1] != b"*":
                return None
            end = data.index(b"\r\n", pos)
            elements = int(data[pos + 1 : end])
            pos = end + 2
            for _ in range(max(elements, 0)):
                end = data.index(b"\r\n", pos)
                pos = end + 2 + int(data[pos + 1 : end]) + 2
    except ValueError:
        return None
    return pos


def _redis_wording(hiredis_message: str) -> str:
    """hiredis's parse error, in the words Redis uses for the same fault."""
    lowered = hiredis_message.lower()
    if "multi-bulk" in lowered:
        return "Protocol error: invalid multibulk length"
    if "bulk string" in lowered:
        return "Protocol error: invalid bulk length"
    match = re.search(r'got "(.{1,4})" as reply type byte', hiredis_message)
    if match:
        return f"Protocol error: expected '$', got '{match.group(1)}'"
    return f"Protocol error: {hiredis_message}"


def _ends_with(data: bytes, frame: Frame) -> bool:
    """Whether `data` ends with the canonical encoding of `frame` (so, on a frame boundary).
    Small pieces are compared by slicing (cheapest); a large argument in place, without a copy."""
    pos = len(data)
    for arg in reversed(frame):
        size = len(arg)
        start = pos - 2 - size
        header = b"$%d\r\n" % size
        header_start = start - len(header)
        if header_start < 0 or data[pos - 2 : pos] != b"\r\n" or data[header_start:start] != header:
            return False
        if (data[start : pos - 2] != arg) if size <= 4096 else not data.startswith(arg, start):
            return False
        pos = header_start
    header = b"*%d\r\n" % len(frame)
    return data[pos - len(header) : pos] == header and pos >= len(header)


def encode_command(args: Iterable[bytes]) -> bytes:
    """A request in RESP form (what the AOF stores and what tests send)."""
    items = list(args)
    out = [b"*%d\r\n" % len(items)]
    for item in items:
        out.append(b"$%d\r\n%s\r\n" % (len(item), item))
    return b"".join(out)
