"""A hypothesis state machine: random command sequences against ATLAS and a plain-Python model of
the keyspace (strings, lists, sets, hashes, expiry on a fake clock) must give the same answers."""

from collections import deque

import hypothesis.strategies as st
from hypothesis import settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from atlas.commands.session import ServerState, build_table
from atlas.protocol import ErrorReply
from atlas.store.keyspace import Store
from tests.atlas.conftest import Client, FakeClock

KEYS = st.sampled_from([b"a", b"b", b"c"])
VALUES = st.binary(min_size=0, max_size=4)
WRONGTYPE = "WRONGTYPE"


class KeyspaceMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        build_table()
        self.clock = FakeClock()
        self.client = Client(ServerState(store=Store(clock=self.clock)).new_session())
        self.model: dict[bytes, object] = {}
        self.deadlines: dict[bytes, float] = {}

    # -- the model's own expiry ---------------------------------------------------------------

    def live(self, key: bytes) -> object | None:
        deadline = self.deadlines.get(key)
        if deadline is not None and deadline <= self.clock.now:
            self.model.pop(key, None)
            self.deadlines.pop(key, None)
        return self.model.get(key)

    def call(self, *args: object) -> object:
        try:
            return self.client.call(*args)
        except ErrorReply as error:
            return error.message.split()[0]

    def store(self, key: bytes, value: object, keep_ttl: bool = False) -> None:
        self.model[key] = value
        if not keep_ttl:
            self.deadlines.pop(key, None)

    # -- rules ----------------------------------------------------------------------------------

    @rule(key=KEYS, value=VALUES)
    def set(self, key: bytes, value: bytes) -> None:
        assert self.call("SET", key, value) == b"OK"
        self.store(key, value)

    @rule(key=KEYS)
    def get(self, key: bytes) -> None:
        value = self.live(key)
        expected = WRONGTYPE if value is not None and not isinstance(value, bytes) else value
        assert self.call("GET", key) == expected

    @rule(key=KEYS, value=VALUES)
    def append(self, key: bytes, value: bytes) -> None:
        current = self.live(key)
        if current is not None and not isinstance(current, bytes):
            assert self.call("APPEND", key, value) == WRONGTYPE
            return
        result = (current or b"") + value
        assert self.call("APPEND", key, value) == len(result)
        self.store(key, result, keep_ttl=True)

    @rule(key=KEYS)
    def incr(self, key: bytes) -> None:
        current = self.live(key)
        reply = self.call("INCR", key)
        if current is not None and not isinstance(current, bytes):
            assert reply == WRONGTYPE
            return
        text = current if current is not None else b"0"
        try:
            number = int(text)
            valid = text == str(number).encode()
        except ValueError:
            valid = False
        if not valid:
            assert reply == "ERR"
            return
        assert reply == number + 1
        self.store(key, str(number + 1).encode(), keep_ttl=True)

    @rule(key=KEYS, values=st.lists(VALUES, min_size=1, max_size=3), left=st.booleans())
    def push(self, key: bytes, values: list[bytes], left: bool) -> None:
        current = self.live(key)
        reply = self.call("LPUSH" if left else "RPUSH", key, *values)
        if current is not None and not isinstance(current, deque):
            assert reply == WRONGTYPE
            return
        items = current if isinstance(current, deque) else deque()
        for value in values:
            items.appendleft(value) if left else items.append(value)
        self.store(key, items, keep_ttl=current is not None)
        assert reply == len(items)

    @rule(key=KEYS)
    def lpop(self, key: bytes) -> None:
        current = self.live(key)
        reply = self.call("LPOP", key)
        if current is not None and not isinstance(current, deque):
            assert reply == WRONGTYPE
            return
        if not current:
            assert reply is None
            return
        assert reply == current.popleft()
        if not current:
            self.model.pop(key)
            self.deadlines.pop(key, None)

    @rule(key=KEYS)
    def lrange(self, key: bytes) -> None:
        current = self.live(key)
        expected = WRONGTYPE if current is not None and not isinstance(current, deque) else list(current or [])
        assert self.call("LRANGE", key, 0, -1) == expected

    @rule(key=KEYS, members=st.lists(VALUES, min_size=1, max_size=3))
    def sadd(self, key: bytes, members: list[bytes]) -> None:
        current = self.live(key)
        reply = self.call("SADD", key, *members)
        if current is not None and not isinstance(current, set):
            assert reply == WRONGTYPE
            return
        items = current if isinstance(current, set) else set()
        before = len(items)
        items.update(members)
        self.store(key, items, keep_ttl=current is not None)
        assert reply == len(items) - before

    @rule(key=KEYS, member=VALUES)
    def srem(self, key: bytes, member: bytes) -> None:
        current = self.live(key)
        reply = self.call("SREM", key, member)
        if current is not None and not isinstance(current, set):
            assert reply == WRONGTYPE
            return
        removed = int(current is not None and member in current)
        assert reply == removed
        if removed:
            current.discard(member)
            if not current:
                self.model.pop(key)
                self.deadlines.pop(key, None)

    @rule(key=KEYS)
    def smembers(self, key: bytes) -> None:
        current = self.live(key)
        reply = self.call("SMEMBERS", key)
        if current is not None and not isinstance(current, set):
            assert reply == WRONGTYPE
        else:
            assert sorted(reply) == sorted(current or set())

    @rule(key=KEYS, field=VALUES, value=VALUES)
    def hset(self, key: bytes, field: bytes, value: bytes) -> None:
        current = self.live(key)
        reply = self.call("HSET", key, field, value)
        if current is not None and not isinstance(current, dict):
            assert reply == WRONGTYPE
            return
        items = current if isinstance(current, dict) else {}
        assert reply == int(field not in items)
        items[field] = value
        self.store(key, items, keep_ttl=current is not None)

    @rule(key=KEYS)
    def hgetall(self, key: bytes) -> None:
        current = self.live(key)
        reply = self.call("HGETALL", key)
        if current is not None and not isinstance(current, dict):
            assert reply == WRONGTYPE
        else:
            assert dict(reply) == (current or {})

    @rule(key=KEYS)
    def delete(self, key: bytes) -> None:
        existed = self.live(key) is not None
        assert self.call("DEL", key) == int(existed)
        self.model.pop(key, None)
        self.deadlines.pop(key, None)

    @rule(source=KEYS, destination=KEYS)
    def rename(self, source: bytes, destination: bytes) -> None:
        target = destination
        value = self.live(source)
        reply = self.call("RENAME", source, target)
        if value is None:
            assert reply == "ERR"
            return
        assert reply == b"OK"
        if source != target:
            deadline = self.deadlines.pop(source, None)
            self.model[target] = self.model.pop(source)
            self.deadlines.pop(target, None)
            if deadline is not None:
                self.deadlines[target] = deadline

    @rule(key=KEYS, milliseconds=st.integers(min_value=1, max_value=3000))
    def pexpire(self, key: bytes, milliseconds: int) -> None:
        exists = self.live(key) is not None
        assert self.call("PEXPIRE", key, milliseconds) == int(exists)
        if exists:
            self.deadlines[key] = (int(self.clock.now * 1000) + milliseconds) / 1000

    @rule(key=KEYS)
    def persist(self, key: bytes) -> None:
        exists = self.live(key) is not None
        had_deadline = exists and key in self.deadlines
        assert self.call("PERSIST", key) == int(had_deadline)
        self.deadlines.pop(key, None)

    @rule(seconds=st.floats(min_value=0, max_value=2))
    def advance_clock(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @rule()
    def active_expiry(self) -> None:
        self.client.session.store.active_expire_cycle()

    @invariant()
    def same_keys(self) -> None:
        for key in (b"a", b"b", b"c"):
            self.live(key)
        assert sorted(self.client.call("KEYS", "*")) == sorted(self.model)


KeyspaceMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
TestKeyspace = KeyspaceMachine.TestCase
