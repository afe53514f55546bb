"""Publish/subscribe: SUBSCRIBE UNSUBSCRIBE PSUBSCRIBE PUNSUBSCRIBE PUBLISH PUBSUB.

Confirmations and messages are push messages: arrays in RESP2, `>` pushes in RESP3. A RESP2
client with subscriptions may only run the subscription commands, PING, QUIT and RESET.
"""

from __future__ import annotations

from collections.abc import Callable

from atlas.commands import base
from atlas.commands.base import command
from atlas.commands.session import NO_REPLY, Session
from atlas.protocol import ErrorReply, Push
from atlas.store.glob import compile_glob


def _confirm(s: Session, kind: bytes, name: bytes | None) -> None:
    s.push(Push([kind, name, len(s.channels) + len(s.patterns)]))


def _subscribe(s: Session, args: list[bytes], patterns: bool) -> object:
    pubsub = s.state.pubsub
    for name in args[1:]:
        if patterns:
            pubsub.psubscribe(s, name)
            s.patterns.add(name)
        else:
            pubsub.subscribe(s, name)
            s.channels.add(name)
        _confirm(s, b"psubscribe" if patterns else b"subscribe", name)
    s.refresh_gate()
    return NO_REPLY


def _unsubscribe(s: Session, args: list[bytes], patterns: bool) -> object:
    pubsub = s.state.pubsub
    current = s.patterns if patterns else s.channels
    kind = b"punsubscribe" if patterns else b"unsubscribe"
    names = args[1:] or sorted(current)
    if not names:
        _confirm(s, kind, None)
    remove: Callable[[Session, bytes], bool] = pubsub.punsubscribe if patterns else pubsub.unsubscribe
    for name in names:
        remove(s, name)
        current.discard(name)
        _confirm(s, kind, name)
    s.refresh_gate()
    return NO_REPLY


@command("subscribe", -2, "pubsub pubsub_ok", group="pubsub", since="2.0.0")
def subscribe(s: Session, args: list[bytes]) -> object:
    """Listen for messages published to channels."""
    return _subscribe(s, args, patterns=False)


@command("unsubscribe", -1, "pubsub pubsub_ok", group="pubsub", since="2.0.0")
def unsubscribe(s: Session, args: list[bytes]) -> object:
    """Stop listening to channels (all of them without arguments)."""
    return _unsubscribe(s, args, patterns=False)


@command("psubscribe", -2, "pubsub pubsub_ok", group="pubsub", since="2.0.0")
def psubscribe(s: Session, args: list[bytes]) -> object:
    """Listen for messages published to channels matching glob patterns."""
    return _subscribe(s, args, patterns=True)


@command("punsubscribe", -1, "pubsub pubsub_ok", group="pubsub", since="2.0.0")
def punsubscribe(s: Session, args: list[bytes]) -> object:
    """Stop listening to patterns (all of them without arguments)."""
    return _unsubscribe(s, args, patterns=True)


@command("publish", 3, "pubsub fast", group="pubsub", since="2.0.0")
def publish(s: Session, args: list[bytes]) -> object:
    """Post a message to a channel; the number of clients that received it."""
    return s.state.pubsub.publish(args[1], args[2])


@command("pubsub", -2, "pubsub", group="pubsub", since="2.8.0")
def pubsub(s: Session, args: list[bytes]) -> object:
    """Inspect the pub/sub state: CHANNELS [pattern], NUMSUB [channel ...], NUMPAT."""
    sub = args[1].lower()
    registry = s.state.pubsub
    if sub == b"channels" and len(args) <= 3:
        matches = compile_glob(args[2]) if len(args) == 3 else None
        return [channel for channel in registry.channels if matches is None or matches(channel)]
    if sub == b"numsub":
        return [item for channel in args[2:] for item in (channel, len(registry.channels.get(channel, ())))]
    if sub == b"numpat" and len(args) == 2:
        return len(registry.patterns)
    if sub == b"help" and len(args) == 2:
        return [b"PUBSUB CHANNELS [<pattern>]", b"PUBSUB NUMSUB [<channel> ...]", b"PUBSUB NUMPAT"]
    if sub in (b"channels", b"numpat", b"help"):
        raise ErrorReply(f"ERR wrong number of arguments for 'pubsub|{sub.decode()}' command")
    raise ErrorReply(base.unknown_subcommand(args[1], "pubsub"))
