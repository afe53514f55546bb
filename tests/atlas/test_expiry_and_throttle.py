"""Expiry (lazy, active, clock jumps) and CL.THROTTLE's GCRA, on a controllable clock."""

import pytest

from atlas.protocol import ErrorReply


def test_an_expired_key_is_not_returned(client, clock):
    client.call("SET", "k", "v", "PX", "1500")
    clock.advance(1.4)
    assert client.call("GET", "k") == b"v"
    clock.advance(0.2)
    assert client.call("GET", "k") is None
    assert client.call("EXISTS", "k") == 0


def test_active_expiry_reclaims_keys_without_traffic(client, clock, state, propagated):
    for number in range(500):
        client.call("SET", f"k{number}", "v", "EX", "10")
    client.call("SET", "forever", "v")
    clock.advance(11)
    removed = state.store.active_expire_cycle()
    assert removed == 500
    assert len(state.store.dbs[0].data) == 1
    assert state.store.expired_keys == 500
    assert propagated[-1][1][0] == b"DEL"


def test_a_key_whose_ttl_was_removed_is_not_expired_by_its_old_deadline(client, clock, state):
    client.call("SET", "k", "v", "EX", "10")
    client.call("PERSIST", "k")
    client.call("SET", "j", "v", "EX", "10")
    client.call("EXPIRE", "j", "100")
    clock.advance(20)
    state.store.active_expire_cycle()
    assert client.call("GET", "k") == b"v"
    assert client.call("GET", "j") == b"v"


def test_a_clock_jump_back_delays_expiry_by_the_jump_never_forever(client, clock, state):
    client.call("SET", "k", "v", "EX", "10")
    clock.advance(-3600)
    state.store.active_expire_cycle()
    assert client.call("GET", "k") == b"v"
    clock.advance(3600 + 11)
    state.store.active_expire_cycle()
    assert b"k" not in state.store.dbs[0].data


def test_followers_treat_expired_keys_as_absent_without_deleting_them(client, clock, state):
    client.call("SET", "k", "v", "EX", "1")
    state.store.expiry_enabled = False
    clock.advance(2)
    assert client.call("GET", "k") is None
    assert state.store.active_expire_cycle() == 0
    assert b"k" in state.store.dbs[0].data


def throttle(client, key="t", burst=4, count=1, period=1, quantity=None):
    args = ["CL.THROTTLE", key, burst, count, period] + ([quantity] if quantity is not None else [])
    return client.call(*args)


def test_gcra_lets_a_burst_through_then_limits(client, clock):
    # burst 4: a limit of 5 at once, refilling one per second (redis-cell's own test case).
    assert throttle(client, quantity=6) == [1, 5, 5, -1, 0]
    expected_remaining = [4, 3, 2, 1, 0]
    for number, remaining in enumerate(expected_remaining, start=1):
        assert throttle(client) == [0, 5, remaining, -1, number]
    assert throttle(client) == [1, 5, 0, 1, 5]
    clock.advance(3)
    assert throttle(client) == [0, 5, 2, -1, 3]
    clock.advance(0.1)
    assert throttle(client) == [0, 5, 1, -1, 4]
    assert throttle(client, quantity=0) == [0, 5, 1, -1, 4]


def test_gcra_state_expires_when_the_bucket_is_full_again(client, clock, state):
    throttle(client)
    assert client.call("PTTL", "t") == 1000
    clock.advance(2)
    state.store.active_expire_cycle()
    assert client.call("EXISTS", "t") == 0


def test_gcra_is_propagated_as_an_absolute_set(client, clock, propagated):
    throttle(client)
    argv = propagated[-1][1]
    assert argv[:1] == [b"SET"]
    assert argv[3] == b"PXAT"


@pytest.mark.parametrize("args", [("t", -1, 1, 1), ("t", 1, 0, 1), ("t", 1, 1, 0), ("t", "x", 1, 1)])
def test_gcra_refuses_bad_parameters(client, args):
    with pytest.raises(ErrorReply):
        client.call("CL.THROTTLE", *args)
