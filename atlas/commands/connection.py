"""Connection commands: PING ECHO AUTH HELLO SELECT QUIT RESET CLIENT."""

from __future__ import annotations

import hmac
import time

from atlas.commands import base
from atlas.commands.base import command, parse_int
from atlas.commands.session import REDIS_VERSION, Session
from atlas.protocol import OK, PONG, ErrorReply, Map, Status, Verbatim

NO_SPACES = "ERR Client names cannot contain spaces, newlines or special characters."


def _password_matches(session: Session, password: bytes) -> bool:
    expected = session.state.config.requirepass.encode()
    return hmac.compare_digest(password, expected)


@command("ping", -1, "fast no_auth pubsub_ok", group="connection")
def ping(s: Session, args: list[bytes]) -> object:
    """Ping the server."""
    if len(args) > 2:
        raise ErrorReply(base.wrong_arity("ping"))
    if (s.channels or s.patterns) and not s.resp3:
        return [b"pong", args[1] if len(args) == 2 else b""]
    return args[1] if len(args) == 2 else PONG


@command("echo", 2, "fast", group="connection")
def echo(s: Session, args: list[bytes]) -> object:
    """Echo the given string."""
    return args[1]


@command("auth", -2, "fast no_auth", group="connection")
def auth(s: Session, args: list[bytes]) -> object:
    """Authenticate as the default user."""
    if len(args) > 3:
        raise ErrorReply(base.SYNTAX)
    username, password = (b"default", args[1]) if len(args) == 2 else (args[1], args[2])
    if not s.state.config.requirepass:
        if len(args) == 2:
            raise ErrorReply(base.AUTH_NOT_CONFIGURED)
        if username != b"default":
            raise ErrorReply(base.WRONGPASS)
        return OK
    if username != b"default" or not _password_matches(s, password):
        raise ErrorReply(base.WRONGPASS)
    s.authenticated = True
    s.refresh_gate()
    return OK


@command("hello", -1, "fast no_auth", group="connection", since="6.0.0")
def hello(s: Session, args: list[bytes]) -> object:
    """Handshake: choose RESP2 or RESP3, optionally authenticate and name the connection."""
    protocol = None
    if len(args) > 1:
        try:
            protocol = parse_int(args[1])
        except ErrorReply:
            raise ErrorReply("ERR Protocol version is not an integer or out of range") from None
        if protocol not in (2, 3):
            raise ErrorReply("NOPROTO unsupported protocol version")
    position = 2
    name = None
    while position < len(args):
        option = args[position].lower()
        if option == b"auth" and position + 2 < len(args):
            username, password = args[position + 1], args[position + 2]
            configured = s.state.config.requirepass
            if username != b"default" or (configured and not _password_matches(s, password)):
                raise ErrorReply(base.WRONGPASS)
            s.authenticated = True
            position += 3
        elif option == b"setname" and position + 1 < len(args):
            name = args[position + 1]
            if not _valid_name(name):
                raise ErrorReply(NO_SPACES)
            position += 2
        else:
            raise ErrorReply(f"ERR Syntax error in HELLO option '{args[position].decode('utf-8', 'replace')}'")
    if not s.authenticated:
        raise ErrorReply(
            "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> "
            "AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol "
            "version at the same time"
        )
    if protocol is not None:
        s.resp3 = protocol == 3
    if name is not None:
        s.name = name
    s.refresh_gate()
    return Map(
        [
            (b"server", b"redis"),
            (b"version", REDIS_VERSION.encode()),
            (b"proto", 3 if s.resp3 else 2),
            (b"id", s.id),
            (b"mode", b"standalone"),
            (b"role", b"master"),
            (b"modules", []),
        ]
    )


@command("select", 2, "fast", group="connection")
def select(s: Session, args: list[bytes]) -> object:
    """Change the selected database."""
    index = parse_int(args[1])
    if not 0 <= index < len(s.store.dbs):
        raise ErrorReply(base.DB_INDEX_OUT_OF_RANGE)
    s.select(index)
    return OK


@command("quit", -1, "fast no_auth pubsub_ok", group="connection")
def quit_(s: Session, args: list[bytes]) -> object:
    """Close the connection after the reply."""
    s.closing = True
    return OK


@command("reset", 1, "fast no_auth pubsub_ok", group="connection", since="6.2.0")
def reset(s: Session, args: list[bytes]) -> object:
    """Reset the connection: discard MULTI, unwatch, unsubscribe, RESP2, db 0, no name."""
    s.multi = None
    s.multi_failed = False
    s.unwatch()
    for channel in list(s.channels):
        s.state.pubsub.unsubscribe(s, channel)
    for pattern in list(s.patterns):
        s.state.pubsub.punsubscribe(s, pattern)
    s.channels.clear()
    s.patterns.clear()
    s.resp3 = False
    s.select(0)
    s.name = b""
    s.readonly = False
    s.authenticated = not s.state.config.requirepass
    s.refresh_gate()
    return Status(b"RESET")


def _valid_name(name: bytes) -> bool:
    return all(33 <= byte <= 126 for byte in name)


def client_line(session: Session) -> bytes:
    """One line of CLIENT LIST / CLIENT INFO."""
    now = time.time()
    flags = "P" if session.channels or session.patterns else ("x" if session.multi is not None else "N")
    multi = len(session.multi) if session.multi is not None else -1
    fields = [
        f"id={session.id}",
        f"addr={session.addr}",
        f"laddr={session.laddr}",
        "fd=-1",
        f"name={session.name.decode('utf-8', 'replace')}",
        f"age={int(now - session.created)}",
        f"idle={int(time.monotonic() - session.last_interaction)}",
        f"flags={flags}",
        f"db={session.db.index}",
        f"sub={len(session.channels)}",
        f"psub={len(session.patterns)}",
        "ssub=0",
        f"multi={multi}",
        "qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 rbs=0 rbp=0 obl=0 oll=0 omem=0 tot-mem=0 events=r",
        f"cmd={session.last_command.decode() or 'NULL'}",
        "user=default redir=-1",
        f"resp={3 if session.resp3 else 2}",
        f"lib-name={session.lib_name.decode('utf-8', 'replace')}",
        f"lib-ver={session.lib_ver.decode('utf-8', 'replace')}",
    ]
    return " ".join(fields).encode() + b"\n"


CLIENT_HELP = [
    b"CLIENT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    b"GETNAME, SETNAME <name>, ID, INFO, LIST [TYPE normal|pubsub] [ID <id> ...],",
    b"KILL <ip:port> | KILL [ID <id>] [ADDR <ip:port>] [LADDR <ip:port>] [SKIPME yes|no],",
    b"SETINFO LIB-NAME|LIB-VER <value>, NO-EVICT on|off, NO-TOUCH on|off, HELP.",
]


@command("client", -2, "", group="connection")
def client(s: Session, args: list[bytes]) -> object:
    """Inspect and manage client connections."""
    sub = args[1].lower()
    if sub == b"setname" and len(args) == 3:
        if not _valid_name(args[2]):
            raise ErrorReply(NO_SPACES)
        s.name = args[2]
        return OK
    if sub == b"getname" and len(args) == 2:
        return s.name or None
    if sub == b"id" and len(args) == 2:
        return s.id
    if sub == b"info" and len(args) == 2:
        return Verbatim(client_line(s))
    if sub == b"list":
        return Verbatim(b"".join(client_line(session) for session in _client_list(s, args[2:])))
    if sub == b"kill" and len(args) >= 3:
        return _client_kill(s, args[2:])
    if sub == b"setinfo" and len(args) == 4:
        attribute = args[2].lower()
        if not _valid_name(args[3]):
            name = attribute.decode("utf-8", "replace")
            raise ErrorReply(f"ERR {name} cannot contain spaces, newlines or special characters.")
        if attribute == b"lib-name":
            s.lib_name = args[3]
        elif attribute == b"lib-ver":
            s.lib_ver = args[3]
        else:
            raise ErrorReply(f"ERR Unrecognized option '{args[2].decode('utf-8', 'replace')}'")
        return OK
    if sub in (b"no-evict", b"no-touch") and len(args) == 3:
        if args[2].lower() not in (b"on", b"off"):
            raise ErrorReply(base.SYNTAX)
        return OK
    if sub == b"help" and len(args) == 2:
        return CLIENT_HELP
    if sub in (b"setname", b"getname", b"id", b"info", b"kill", b"setinfo", b"no-evict", b"no-touch", b"help"):
        raise ErrorReply(f"ERR wrong number of arguments for 'client|{sub.decode()}' command")
    raise ErrorReply(base.unknown_subcommand(args[1], "client"))


def _client_list(s: Session, options: list[bytes]) -> list[Session]:
    sessions = list(s.state.sessions.values())
    position = 0
    while position < len(options):
        option = options[position].lower()
        if option == b"type" and position + 1 < len(options):
            kind = options[position + 1].lower()
            if kind == b"pubsub":
                sessions = [session for session in sessions if session.channels or session.patterns]
            elif kind == b"normal":
                sessions = [session for session in sessions if not (session.channels or session.patterns)]
            elif kind not in (b"master", b"replica"):
                raise ErrorReply(f"ERR Unknown client type '{kind.decode('utf-8', 'replace')}'")
            else:
                sessions = []
            position += 2
        elif option == b"id" and position + 1 < len(options):
            wanted = {parse_int(raw) for raw in options[position + 1 :]}
            sessions = [session for session in sessions if session.id in wanted]
            break
        else:
            raise ErrorReply(base.SYNTAX)
    return sessions


def _client_kill(s: Session, options: list[bytes]) -> object:
    sessions = s.state.sessions
    if len(options) == 1:  # the old form: CLIENT KILL addr:port
        targets = [session for session in sessions.values() if session.addr.encode() == options[0]]
        if not targets:
            raise ErrorReply("ERR No such client")
        _kill(s, targets)
        return OK
    if len(options) % 2:
        raise ErrorReply(base.SYNTAX)
    candidates = list(sessions.values())
    skip_me = True
    for position in range(0, len(options), 2):
        option, value = options[position].lower(), options[position + 1]
        if option == b"id":
            client_id = parse_int(value, "ERR client-id should be greater than 0")
            candidates = [session for session in candidates if session.id == client_id]
        elif option == b"addr":
            candidates = [session for session in candidates if session.addr.encode() == value]
        elif option == b"laddr":
            candidates = [session for session in candidates if session.laddr.encode() == value]
        elif option == b"user":
            if value != b"default":
                candidates = []
        elif option == b"skipme":
            if value.lower() not in (b"yes", b"no"):
                raise ErrorReply(base.SYNTAX)
            skip_me = value.lower() == b"yes"
        elif option == b"type":
            kind = value.lower()
            if kind == b"pubsub":
                candidates = [session for session in candidates if session.channels or session.patterns]
            elif kind == b"normal":
                candidates = [session for session in candidates if not (session.channels or session.patterns)]
            else:
                candidates = []
        else:
            raise ErrorReply(base.SYNTAX)
    targets = [session for session in candidates if not (skip_me and session is s)]
    _kill(s, targets)
    return len(targets)


def _kill(s: Session, targets: list[Session]) -> None:
    for target in targets:
        target.kill_requested = True
        if target is s:
            s.closing = True
        elif target.disconnect is not None:
            target.disconnect()
