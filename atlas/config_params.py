"""The parameters CONFIG GET and CONFIG SET know.

Those that take effect map to RuntimeConfig attributes with a parser. Others that Redis has but
that mean nothing here (encoding thresholds such as hash-max-listpack-entries, maxmemory) are
accepted, stored and reported back, because tools and test harnesses set them; they change
nothing. Immutable ones (databases, port, bind) are reported and refuse CONFIG SET, as in Redis.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from atlas.store.glob import compile_glob


class ConfigParameterError(Exception):
    """CONFIG SET refused a value; the message is Redis's wording."""


def _size(raw: bytes) -> int:
    text = raw.decode().strip().lower()
    units = {"k": 1000, "kb": 1024, "m": 1000**2, "mb": 1024**2, "g": 1000**3, "gb": 1024**3}
    for suffix in ("kb", "mb", "gb", "k", "m", "g"):
        if text.endswith(suffix):
            number = int(text[: -len(suffix)])
            break
    else:
        number, suffix = int(text), ""
    value = number * units.get(suffix, 1)
    if value < 0:
        raise ValueError("negative size")
    return value


def _non_negative_int(raw: bytes) -> int:
    value = int(raw)
    if value < 0:
        raise ValueError("negative")
    return value


def _positive_int(raw: bytes) -> int:
    value = int(raw)
    if value < 1:
        raise ValueError("must be positive")
    return value


def _yes_no(raw: bytes) -> bool:
    text = raw.lower()
    if text not in (b"yes", b"no"):
        raise ValueError("argument must be 'yes' or 'no'")
    return text == b"yes"


def _fsync_policy(raw: bytes) -> str:
    text = raw.decode().lower()
    if text not in ("always", "everysec", "no"):
        raise ValueError("argument(s) must be one of the following: always, everysec, no")
    return text


def _save_points(raw: bytes) -> str:
    """Redis's `save`: "" or pairs of <seconds> <changes>."""
    words = raw.decode().split()
    if len(words) % 2 or not all(word.isdigit() for word in words):
        raise ValueError("Invalid save parameters")
    return " ".join(words)


@dataclass(frozen=True)
class Parameter:
    name: bytes
    attribute: str | None  # RuntimeConfig attribute; None: immutable, value from `fixed`
    parse: Callable[[bytes], Any] | None = None
    show: Callable[[Any], bytes] = lambda value: str(value).encode()
    fixed: Callable[[Any], bytes] | None = None


def _show_bool(value: Any) -> bytes:
    return b"yes" if value else b"no"


class ParameterTable:
    def __init__(self, parameters: list[Parameter]) -> None:
        self.by_name = {parameter.name: parameter for parameter in parameters}

    def matching(self, runtime: Any, pattern: bytes) -> Iterator[tuple[bytes, bytes]]:
        matches = compile_glob(pattern.lower())
        for name, parameter in self.by_name.items():
            if matches(name):
                yield name, self._value(runtime, parameter)
        for name, value in runtime.others.items():
            if matches(name.encode()) and name.encode() not in self.by_name:
                yield name.encode(), value.encode()

    @staticmethod
    def _value(runtime: Any, parameter: Parameter) -> bytes:
        if parameter.attribute is None:
            assert parameter.fixed is not None
            return parameter.fixed(runtime)
        return parameter.show(getattr(runtime, parameter.attribute))

    def apply(self, runtime: Any, updates: list[tuple[bytes, bytes]]) -> None:
        """Set every pair or none: all values are checked before any is stored."""
        parsed: list[tuple[Parameter | None, bytes, Any]] = []
        seen: set[bytes] = set()
        for raw_name, raw_value in updates:
            name = raw_name.lower()
            if name in seen:
                raise ConfigParameterError(
                    f"ERR CONFIG SET failed (possibly related to argument '{name.decode()}') - duplicate parameter"
                )
            seen.add(name)
            parameter = self.by_name.get(name)
            if parameter is None:
                parsed.append((None, name, raw_value.decode("utf-8", "replace")))
                continue
            if parameter.attribute is None or parameter.parse is None:
                raise ConfigParameterError(
                    f"ERR CONFIG SET failed (possibly related to argument '{name.decode()}') "
                    "- can't set immutable config"
                )
            try:
                parsed.append((parameter, name, parameter.parse(raw_value)))
            except (ValueError, UnicodeDecodeError) as exc:
                raise ConfigParameterError(
                    f"ERR CONFIG SET failed (possibly related to argument '{name.decode()}') - {exc}"
                ) from None
        for parameter, name, value in parsed:
            if parameter is None:
                runtime.others[name.decode("utf-8", "replace")] = value
            else:
                assert parameter.attribute is not None
                setattr(runtime, parameter.attribute, value)


CONFIG_PARAMETERS = ParameterTable(
    [
        Parameter(b"requirepass", "requirepass", lambda raw: raw.decode()),
        Parameter(b"maxclients", "maxclients", _positive_int),
        Parameter(b"timeout", "timeout", _non_negative_int),
        Parameter(b"proto-max-bulk-len", "proto_max_bulk_len", _size),
        Parameter(b"client-query-buffer-limit", "client_query_buffer_limit", _size),
        Parameter(b"protected-mode", "protected_mode", _yes_no, _show_bool),
        # Persistence (atlas.persistence): appendfsync and save take effect at once; the AOF itself
        # is switched on or off at start (--appendonly), so appendonly refuses CONFIG SET.
        Parameter(b"appendonly", None, fixed=lambda runtime: b"yes" if runtime.appendonly else b"no"),
        Parameter(b"appendfsync", "appendfsync", _fsync_policy),
        Parameter(b"save", "save", _save_points),
        Parameter(b"dir", None, fixed=lambda runtime: runtime.dir.encode()),
        Parameter(b"databases", None, fixed=lambda runtime: str(runtime.databases).encode()),
        Parameter(b"port", None, fixed=lambda runtime: str(runtime.port).encode()),
        Parameter(b"bind", None, fixed=lambda runtime: runtime.bind.encode()),
        Parameter(b"hz", None, fixed=lambda runtime: b"10"),
    ]
)
