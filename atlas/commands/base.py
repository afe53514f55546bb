"""The command table's building blocks: the Command record, the @command decorator, Redis's exact
error strings, and argument parsers that raise them."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from atlas.protocol import ErrorReply

if TYPE_CHECKING:
    from atlas.commands.session import Session

Handler = Callable[["Session", list[bytes]], Any]

# -- Redis's error strings (7.0) ----------------------------------------------------------------
WRONGTYPE = "WRONGTYPE Operation against a key holding the wrong kind of value"
SYNTAX = "ERR syntax error"
NOT_INTEGER = "ERR value is not an integer or out of range"
NOT_FLOAT = "ERR value is not a valid float"
OVERFLOW = "ERR increment or decrement would overflow"
NO_SUCH_KEY = "ERR no such key"
INDEX_OUT_OF_RANGE = "ERR index out of range"
DB_INDEX_OUT_OF_RANGE = "ERR DB index is out of range"
HASH_NOT_INTEGER = "ERR hash value is not an integer"
HASH_NOT_FLOAT = "ERR hash value is not a float"
MIN_MAX_NOT_FLOAT = "ERR min or max is not a float"
MIN_MAX_NOT_LEX = "ERR min or max not valid string range item"
NAN_RESULT = "ERR resulting score is not a number (NaN)"
STRING_TOO_LONG = "ERR string exceeds maximum allowed size (proto-max-bulk-len)"
OFFSET_OUT_OF_RANGE = "ERR offset is out of range"
TIMEOUT_NOT_FLOAT = "ERR timeout is not a float or out of range"
TIMEOUT_NEGATIVE = "ERR timeout is negative"
MUST_BE_POSITIVE = "ERR value is out of range, must be positive"
INVALID_CURSOR = "ERR invalid cursor"
NOAUTH = "NOAUTH Authentication required."
WRONGPASS = "WRONGPASS invalid username-password pair or user is disabled."
AUTH_NOT_CONFIGURED = (
    "ERR AUTH <password> called without any password configured for the default user. "
    "Are you sure your configuration is correct?"
)


def wrong_arity(name: str) -> str:
    return f"ERR wrong number of arguments for '{name}' command"


def unknown_subcommand(subcommand: bytes, command: str) -> str:
    return f"ERR unknown subcommand '{_printable(subcommand)}'. Try {command.upper()} HELP."


def invalid_expire_time(command: str) -> str:
    return f"ERR invalid expire time in '{command}' command"


def _printable(data: bytes, limit: int = 128) -> str:
    return data[:limit].decode("utf-8", "replace")


def unknown_command(args: list[bytes]) -> str:
    rest = " ".join(f"'{_printable(arg)}'" for arg in args[1:])
    return f"ERR unknown command '{_printable(args[0])}', with args beginning with: {rest}" + (" " if rest else "")


# -- the table ----------------------------------------------------------------------------------


@dataclass
class Command:
    """One command: its handler, arity (negative: at least), flags and key positions (Redis's
    first/last/step), and the statistics INFO commandstats and the metrics report."""

    name: str
    handler: Handler
    arity: int
    flags: frozenset[str]
    first_key: int = 0
    last_key: int = 0
    step: int = 0
    group: str = "generic"
    summary: str = ""
    since: str = "1.0.0"
    subcommands: dict[str, Command] = field(default_factory=dict)
    calls: int = 0
    usec: float = 0.0
    failed_calls: int = 0
    write: bool = False
    allowed_unauthenticated: bool = False
    allowed_in_pubsub: bool = False
    blocking: bool = False
    name_bytes: bytes = b""

    def __post_init__(self) -> None:
        self.name_bytes = self.name.encode()
        self.write = "write" in self.flags
        self.allowed_unauthenticated = "no_auth" in self.flags
        self.allowed_in_pubsub = "pubsub_ok" in self.flags
        self.blocking = "blocking" in self.flags

    def keys(self, args: list[bytes]) -> list[bytes]:
        """The key arguments of one call, per the key positions."""
        if not self.first_key or len(args) <= self.first_key:
            return []
        last = self.last_key if self.last_key >= 0 else len(args) + self.last_key
        return args[self.first_key : last + 1 : self.step]


REGISTRY: dict[str, Command] = {}


def command(
    name: str,
    arity: int,
    flags: str = "",
    keys: tuple[int, int, int] = (0, 0, 0),
    group: str = "generic",
    summary: str = "",
    since: str = "1.0.0",
) -> Callable[[Handler], Handler]:
    """Register a handler under `name`; flags are words such as write, readonly, no_auth."""

    def register(handler: Handler) -> Handler:
        if name in REGISTRY:
            raise ValueError(f"command {name} registered twice")
        first, last, step = keys
        REGISTRY[name] = Command(
            name=name,
            handler=handler,
            arity=arity,
            flags=frozenset(flags.split()),
            first_key=first,
            last_key=last,
            step=step,
            group=group,
            summary=summary or (handler.__doc__ or "").strip().split("\n")[0],
            since=since,
        )
        return handler

    return register


# -- argument parsing -----------------------------------------------------------------------------

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1


def parse_int(raw: bytes, error: str = NOT_INTEGER) -> int:
    """A signed 64-bit integer written as Redis accepts it (no spaces, no +, no leading zeros)."""
    if not raw or len(raw) > 20 or raw[0] in b" \t+" or raw[-1:] in (b" ", b"\t", b"\n"):
        raise ErrorReply(error)
    if len(raw) > 1 and (raw[0] == 0x30 or raw[:2] == b"-0"):
        raise ErrorReply(error)
    try:
        value = int(raw)
    except ValueError:
        raise ErrorReply(error) from None
    if not INT64_MIN <= value <= INT64_MAX or b"_" in raw:
        raise ErrorReply(error)
    return value


def parse_float(raw: bytes, error: str = NOT_FLOAT) -> float:
    """A double as strtod reads it, inf and -inf included, NaN refused."""
    text = raw.strip().lower()
    if not text or text != raw.lower() or b"_" in text or text in (b"nan", b"-nan", b"+nan"):
        raise ErrorReply(error)
    try:
        value = float(text)
    except ValueError:
        raise ErrorReply(error) from None
    if math.isnan(value):
        raise ErrorReply(error)
    return value


def parse_score_bound(raw: bytes) -> tuple[float, bool]:
    """A ZRANGEBYSCORE bound: (value, exclusive); '(' makes it exclusive."""
    exclusive = raw[:1] == b"("
    value = parse_float(raw[1:] if exclusive else raw, MIN_MAX_NOT_FLOAT)
    return value, exclusive


def parse_lex_bound(raw: bytes) -> tuple[bytes | None, bool]:
    """A ZRANGEBYLEX bound: (member or None for -/+, exclusive)."""
    if raw in (b"-", b"+"):
        return None, False
    if raw[:1] == b"(":
        return raw[1:], True
    if raw[:1] == b"[":
        return raw[1:], False
    raise ErrorReply(MIN_MAX_NOT_LEX)


def parse_timeout(raw: bytes) -> float:
    """A blocking timeout in seconds; 0 means forever."""
    timeout = parse_float(raw, TIMEOUT_NOT_FLOAT)
    if timeout < 0:
        raise ErrorReply(TIMEOUT_NEGATIVE)
    if math.isinf(timeout):
        raise ErrorReply(TIMEOUT_NOT_FLOAT)
    return timeout
