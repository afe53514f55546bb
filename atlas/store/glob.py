"""Redis glob patterns (KEYS, SCAN MATCH, PSUBSCRIBE): *, ?, [abc], [^a-z], and \\ escapes."""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache

Matcher = Callable[[bytes], bool]


@lru_cache(maxsize=1024)
def compile_glob(pattern: bytes) -> Matcher:
    """A predicate that tells whether a key matches `pattern`, as Redis's stringmatchlen does."""
    if pattern == b"*":
        return lambda key: True
    regex = re.compile(_translate(pattern), re.DOTALL)
    return lambda key: regex.fullmatch(key) is not None


def _translate(pattern: bytes) -> bytes:
    out = bytearray()
    pos = 0
    length = len(pattern)
    while pos < length:
        char = pattern[pos : pos + 1]
        if char == b"*":
            out += b".*"
        elif char == b"?":
            out += b"."
        elif char == b"\\" and pos + 1 < length:
            pos += 1
            out += re.escape(pattern[pos : pos + 1])
        elif char == b"[":
            pos = _translate_class(pattern, pos + 1, out)
            continue
        else:
            out += re.escape(char)
        pos += 1
    return bytes(out)


def _translate_class(pattern: bytes, pos: int, out: bytearray) -> int:
    """Translate a [...] class starting after its '['; return the position after its ']'."""
    length = len(pattern)
    negate = pos < length and pattern[pos : pos + 1] == b"^"
    if negate:
        pos += 1
    members = bytearray()
    while pos < length and pattern[pos : pos + 1] != b"]":
        char = pattern[pos : pos + 1]
        if char == b"\\" and pos + 1 < length:
            pos += 1
            members += re.escape(pattern[pos : pos + 1])
        elif pos + 2 < length and pattern[pos + 1 : pos + 2] == b"-" and pattern[pos + 2 : pos + 3] != b"]":
            low, high = sorted((pattern[pos], pattern[pos + 2]))
            members += re.escape(bytes([low])) + b"-" + re.escape(bytes([high]))
            pos += 2
        else:
            members += re.escape(char)
        pos += 1
    # Redis treats an unterminated class as if it ended at the end of the pattern.
    if negate:
        out += b"[^" + members + b"]" if members else b"."
    else:
        out += b"[" + members + b"]" if members else b"(?!)"
    return pos + 1
