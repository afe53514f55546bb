"""Server commands: COMMAND INFO CONFIG DBSIZE FLUSHDB FLUSHALL TIME SHUTDOWN."""

from __future__ import annotations

import os
import platform
import resource
import time
from collections.abc import Callable
from typing import Any

from atlas.commands import base
from atlas.commands.base import Command, command
from atlas.commands.session import (
    ATLAS_VERSION,
    NO_REPLY,
    REDIS_VERSION,
    TABLE,
    TABLE_UNIQUE,
    RuntimeConfig,
    Session,
    reset_command_stats,
    touch_all_watchers,
)
from atlas.config_params import CONFIG_PARAMETERS, ConfigParameterError
from atlas.protocol import OK, ErrorReply, Map, Set, Status, Verbatim

# -- COMMAND ------------------------------------------------------------------------------------


def _command_info(cmd: Command) -> list[Any]:
    flags = sorted(flag for flag in cmd.flags if flag in _PUBLIC_FLAGS)
    return [
        cmd.name.encode(),
        cmd.arity,
        Set([Status(flag.encode()) for flag in flags]),
        cmd.first_key,
        cmd.last_key,
        cmd.step,
        Set([Status(f"@{cmd.group}".encode())]),
        [],
        [],
        [],
    ]


_PUBLIC_FLAGS = frozenset({"write", "readonly", "denyoom", "fast", "no_auth", "pubsub", "blocking", "loading", "stale"})


def _command_doc(cmd: Command) -> Map:
    return Map(
        [
            (b"summary", cmd.summary.encode()),
            (b"since", cmd.since.encode()),
            (b"group", cmd.group.encode()),
        ]
    )


@command("command", -1, "loading stale", group="server")
def command_(s: Session, args: list[bytes]) -> object:
    """Describe the commands ATLAS serves (enough for redis-cli's hints)."""
    commands = sorted(TABLE_UNIQUE, key=lambda cmd: cmd.name)
    if len(args) == 1:
        return [_command_info(cmd) for cmd in commands]
    sub = args[1].lower()
    if sub == b"count" and len(args) == 2:
        return len(commands)
    if sub == b"info":
        if len(args) == 2:
            return [_command_info(cmd) for cmd in commands]
        return [_command_info(TABLE[name.lower()]) if name.lower() in TABLE else None for name in args[2:]]
    if sub == b"docs":
        wanted = commands if len(args) == 2 else [TABLE[name.lower()] for name in args[2:] if name.lower() in TABLE]
        return Map([(cmd.name.encode(), _command_doc(cmd)) for cmd in wanted])
    if sub == b"list" and len(args) == 2:
        return [cmd.name.encode() for cmd in commands]
    if sub == b"getkeys" and len(args) >= 3:
        target = TABLE.get(args[2].lower())
        if target is None:
            raise ErrorReply("ERR Invalid command specified")
        keys = target.keys(args[2:])
        if not keys:
            raise ErrorReply("ERR The command has no key arguments")
        return keys
    if sub == b"help" and len(args) == 2:
        return [b"COMMAND [COUNT|INFO|DOCS|LIST|GETKEYS|HELP]"]
    raise ErrorReply(base.unknown_subcommand(args[1], "command"))


# -- INFO ---------------------------------------------------------------------------------------


def _human(size: int) -> str:
    for unit, scale in (("G", 1024**3), ("M", 1024**2), ("K", 1024)):
        if size >= scale:
            return f"{size / scale:.2f}{unit}"
    return f"{size}B"


def resident_memory_bytes() -> int:
    """The process's resident set size (Linux /proc; the peak elsewhere)."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _server_section(s: Session) -> list[tuple[str, Any]]:
    state = s.state
    uptime = int(time.time() - state.started_at)
    return [
        ("redis_version", REDIS_VERSION),
        ("atlas_version", ATLAS_VERSION),
        ("redis_git_sha1", "00000000"),
        ("redis_git_dirty", 0),
        ("redis_build_id", "atlas"),
        ("redis_mode", "standalone"),
        ("os", f"{platform.system()} {platform.release()} {platform.machine()}"),
        ("arch_bits", 64),
        ("multiplexing_api", "epoll"),
        ("atomicvar_api", "python"),
        ("gcc_version", "0.0.0"),
        ("process_id", os.getpid()),
        ("process_supervised", "no"),
        ("run_id", state.run_id),
        ("tcp_port", state.tcp_port),
        ("server_time_usec", int(time.time() * 1_000_000)),
        ("uptime_in_seconds", uptime),
        ("uptime_in_days", uptime // 86400),
        ("hz", 10),
        ("configured_hz", 10),
        ("executable", "manage.py runatlas"),
        ("config_file", ""),
        ("io_threads_active", 0),
    ]


def _clients_section(s: Session) -> list[tuple[str, Any]]:
    state = s.state
    return [
        ("connected_clients", len(state.sessions)),
        ("cluster_connections", 0),
        ("maxclients", state.config.maxclients),
        ("client_recent_max_input_buffer", 0),
        ("client_recent_max_output_buffer", 0),
        ("blocked_clients", len(state.blocked_sessions)),
        ("tracking_clients", 0),
        ("clients_in_timeout_table", len(state.blocked_sessions)),
    ]


def _memory_section(s: Session) -> list[tuple[str, Any]]:
    rss = resident_memory_bytes()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return [
        ("used_memory", rss),
        ("used_memory_human", _human(rss)),
        ("used_memory_rss", rss),
        ("used_memory_rss_human", _human(rss)),
        ("used_memory_peak", max(peak, rss)),
        ("used_memory_peak_human", _human(max(peak, rss))),
        ("maxmemory", 0),
        ("maxmemory_human", "0B"),
        ("maxmemory_policy", "noeviction"),
        ("mem_allocator", "pymalloc"),
    ]


def _persistence_section(s: Session) -> list[tuple[str, Any]]:
    return [
        ("loading", 0),
        ("async_loading", 0),
        ("rdb_changes_since_last_save", s.store.dirty),
        ("rdb_bgsave_in_progress", 0),
        ("aof_enabled", 0),
        ("aof_rewrite_in_progress", 0),
    ]


def _stats_section(s: Session) -> list[tuple[str, Any]]:
    state = s.state
    samples = state.ops_samples
    return [
        ("total_connections_received", state.total_connections),
        ("total_commands_processed", state.total_commands()),
        ("instantaneous_ops_per_sec", int(sum(samples) / len(samples)) if samples else 0),
        ("total_net_input_bytes", state.net_input_bytes),
        ("total_net_output_bytes", state.net_output_bytes),
        ("rejected_connections", state.rejected_connections),
        ("expired_keys", s.store.expired_keys),
        ("evicted_keys", 0),
        ("pubsub_channels", len(state.pubsub.channels)),
        ("pubsub_patterns", len(state.pubsub.patterns)),
    ]


def _replication_section(s: Session) -> list[tuple[str, Any]]:
    return [
        ("role", "master"),
        ("connected_slaves", 0),
        ("master_failover_state", "no-failover"),
        ("master_replid", s.state.run_id),
        ("master_repl_offset", 0),
    ]


def _cpu_section(s: Session) -> list[tuple[str, Any]]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return [("used_cpu_sys", f"{usage.ru_stime:.6f}"), ("used_cpu_user", f"{usage.ru_utime:.6f}")]


def _commandstats_section(s: Session) -> list[tuple[str, Any]]:
    lines = []
    for cmd in sorted(TABLE_UNIQUE, key=lambda cmd: cmd.name):
        if cmd.calls:
            usec = int(cmd.usec * 1_000_000)
            per_call = cmd.usec * 1_000_000 / cmd.calls
            value = (
                f"calls={cmd.calls},usec={usec},usec_per_call={per_call:.2f},"
                f"rejected_calls=0,failed_calls={cmd.failed_calls}"
            )
            lines.append((f"cmdstat_{cmd.name}", value))
    return lines


def _cluster_section(s: Session) -> list[tuple[str, Any]]:
    return [("cluster_enabled", 0)]


def _keyspace_section(s: Session) -> list[tuple[str, Any]]:
    lines = []
    now = s.store.now_ms()
    for db in s.store.dbs:
        if db.data:
            expires = len(db.expires)
            avg_ttl = int(sum(max(when - now, 0) for when in db.expires.values()) / expires) if expires else 0
            lines.append((f"db{db.index}", f"keys={len(db.data)},expires={expires},avg_ttl={avg_ttl}"))
    return lines


Section = Callable[[Session], list[tuple[str, Any]]]
SECTIONS: dict[str, Section] = {
    "server": _server_section,
    "clients": _clients_section,
    "memory": _memory_section,
    "persistence": _persistence_section,
    "stats": _stats_section,
    "replication": _replication_section,
    "cpu": _cpu_section,
    "modules": lambda s: [],
    "commandstats": _commandstats_section,
    "cluster": _cluster_section,
    "keyspace": _keyspace_section,
}
DEFAULT_SECTIONS = (
    "server",
    "clients",
    "memory",
    "persistence",
    "stats",
    "replication",
    "cpu",
    "modules",
    "cluster",
    "keyspace",
)


def info_text(s: Session, wanted: list[str]) -> bytes:
    """The text of INFO for the named sections (or the default ones)."""
    extra = s.state.info_sections
    known = [*SECTIONS, *(name for name in extra if name not in SECTIONS)]
    if not wanted or wanted == ["default"]:
        names = [*DEFAULT_SECTIONS, *(name for name in extra if name not in SECTIONS)]
    elif "all" in wanted or "everything" in wanted:
        names = known
    else:
        names = [name for name in known if name in wanted]
    blocks = []
    for name in names:
        fields = SECTIONS[name](s) if name in SECTIONS else []
        if name in extra:
            fields = [field for field in fields if field[0] not in {key for key, _ in extra[name]()}]
            fields += extra[name]()
        lines = [f"# {name.capitalize()}"] + [f"{key}:{value}" for key, value in fields]
        blocks.append("\r\n".join(lines))
    return ("\r\n\r\n".join(blocks) + "\r\n").encode()


@command("info", -1, "loading stale", group="server")
def info(s: Session, args: list[bytes]) -> object:
    """Information and statistics about the server."""
    wanted = [arg.decode("utf-8", "replace").lower() for arg in args[1:]]
    return Verbatim(info_text(s, wanted))


# -- CONFIG -------------------------------------------------------------------------------------


@command("config", -2, "admin loading stale", group="server")
def config(s: Session, args: list[bytes]) -> object:
    """Read and change the configuration (see atlas.config_params for what takes effect)."""
    sub = args[1].lower()
    runtime = s.state.config
    if sub == b"get" and len(args) >= 3:
        pairs: dict[bytes, bytes] = {}
        for pattern in args[2:]:
            for name, value in CONFIG_PARAMETERS.matching(runtime, pattern):
                pairs[name] = value
        return Map(list(pairs.items()))
    if sub == b"set" and len(args) >= 4 and len(args) % 2 == 0:
        updates = list(zip(args[2::2], args[3::2], strict=True))
        try:
            CONFIG_PARAMETERS.apply(runtime, updates)
        except ConfigParameterError as exc:
            raise ErrorReply(str(exc)) from None
        limits = s.state.protocol_limits
        limits.max_bulk_length = runtime.proto_max_bulk_len
        limits.max_query_buffer = runtime.client_query_buffer_limit
        return OK
    if sub == b"resetstat" and len(args) == 2:
        reset_command_stats()
        return OK
    if sub == b"rewrite" and len(args) == 2:
        raise ErrorReply("ERR The server is running without a config file")
    if sub == b"help" and len(args) == 2:
        return [
            b"CONFIG GET <pattern> [<pattern> ...]",
            b"CONFIG SET <name> <value> [<name> <value> ...]",
            b"CONFIG RESETSTAT",
            b"CONFIG HELP",
        ]
    if sub in (b"get", b"set", b"resetstat", b"rewrite", b"help"):
        raise ErrorReply(f"ERR wrong number of arguments for 'config|{sub.decode()}' command")
    raise ErrorReply(base.unknown_subcommand(args[1], "config"))


def config_snapshot(runtime: RuntimeConfig) -> dict[bytes, bytes]:
    return dict(CONFIG_PARAMETERS.matching(runtime, b"*"))


# -- the rest -----------------------------------------------------------------------------------


@command("dbsize", 1, "readonly fast", group="server")
def dbsize(s: Session, args: list[bytes]) -> object:
    """The number of keys in the selected database."""
    return len(s.db)


def _flush_mode(args: list[bytes]) -> None:
    if len(args) > 2 or (len(args) == 2 and args[1].lower() not in (b"async", b"sync")):
        raise ErrorReply(base.SYNTAX)


@command("flushdb", -1, "write", group="server")
def flushdb(s: Session, args: list[bytes]) -> object:
    """Remove every key of the selected database."""
    _flush_mode(args)
    s.db.flush()
    touch_all_watchers(s.db)
    return OK


@command("flushall", -1, "write", group="server")
def flushall(s: Session, args: list[bytes]) -> object:
    """Remove every key of every database."""
    _flush_mode(args)
    for db in s.store.dbs:
        db.flush()
        touch_all_watchers(db)
    return OK


@command("time", 1, "fast loading stale", group="server")
def time_(s: Session, args: list[bytes]) -> object:
    """The server time: seconds and microseconds."""
    now = time.time_ns() // 1000
    return [b"%d" % (now // 1_000_000), b"%d" % (now % 1_000_000)]


@command("shutdown", -1, "admin loading stale", group="server")
def shutdown(s: Session, args: list[bytes]) -> object:
    """Stop the server (saving first unless NOSAVE, when persistence is on)."""
    save: bool | None = None
    for option in (arg.lower() for arg in args[1:]):
        if option == b"nosave":
            save = False
        elif option == b"save":
            save = True
        elif option not in (b"now", b"force"):
            raise ErrorReply(base.SYNTAX)
    if s.state.shutdown is None:
        raise ErrorReply("ERR SHUTDOWN is not available in this process")
    s.state.shutdown(save is not False)
    s.closing = True
    return NO_REPLY
