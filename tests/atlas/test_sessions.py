"""Connection-level behaviour of sessions: auth, HELLO, MULTI/WATCH, pub/sub, CLIENT, CONFIG, INFO."""

import pytest

from atlas.protocol import NULL_ARRAY, QUEUED, ErrorReply, Push, encode
from tests.atlas.conftest import Client


def new_client(state):
    return Client(state.new_session("127.0.0.1:50001", "127.0.0.1:6380"))


def test_requirepass_gates_commands_until_auth(state):
    state.config.requirepass = "s3cret"
    client = new_client(state)
    with pytest.raises(ErrorReply, match="^NOAUTH Authentication required.$"):
        client.call("GET", "k")
    with pytest.raises(ErrorReply, match="^WRONGPASS"):
        client.call("AUTH", "wrong")
    assert client.call("AUTH", "s3cret") == b"OK"
    assert client.call("SET", "k", "v") == b"OK"


def test_hello_authenticates_and_switches_protocol(state):
    state.config.requirepass = "s3cret"
    client = new_client(state)
    with pytest.raises(ErrorReply, match="^NOAUTH HELLO must be called"):
        client.call("HELLO", "3")
    reply = dict(client.call("HELLO", "3", "AUTH", "default", "s3cret", "SETNAME", "worker"))
    assert reply[b"proto"] == 3
    assert reply[b"version"] == b"7.0.15"
    assert client.session.resp3
    assert client.call("CLIENT", "GETNAME") == b"worker"
    with pytest.raises(ErrorReply, match="^NOPROTO"):
        client.call("HELLO", "4")


def test_auth_without_a_configured_password_is_refused_as_redis_does(client):
    with pytest.raises(ErrorReply, match="without any password configured"):
        client.call("AUTH", "anything")


def test_multi_exec_runs_queued_commands_and_propagates_them_as_one_block(client, propagated):
    assert client.call("MULTI") == b"OK"
    assert client.call("SET", "a", "1") is QUEUED
    assert client.call("INCR", "a") is QUEUED
    assert client.call("GET", "a") is QUEUED
    assert client.call("EXEC") == [b"OK", 2, b"2"]
    assert [argv for _, argv in propagated] == [[b"MULTI"], [b"SET", b"a", b"1"], [b"INCR", b"a"], [b"EXEC"]]


def test_a_queueing_error_aborts_the_transaction(client):
    client.call("MULTI")
    client.call("SET", "a", "1")
    with pytest.raises(ErrorReply, match="wrong number of arguments"):
        client.call("GET")
    with pytest.raises(ErrorReply, match="^EXECABORT"):
        client.call("EXEC")
    assert client.call("EXISTS", "a") == 0


def test_runtime_errors_inside_exec_do_not_stop_the_rest(client):
    client.call("LPUSH", "l", "x")
    client.call("MULTI")
    client.call("INCR", "l")
    client.call("SET", "after", "yes")
    replies = client.call("EXEC")
    assert isinstance(replies[0], ErrorReply)
    assert replies[1] == b"OK"


def test_watch_aborts_exec_when_another_client_changes_the_key(client, state):
    other = new_client(state)
    client.call("SET", "balance", "10")
    client.call("WATCH", "balance")
    other.call("INCRBY", "balance", "5")
    client.call("MULTI")
    client.call("SET", "balance", "0")
    assert client.call("EXEC") is NULL_ARRAY
    assert client.call("GET", "balance") == b"15"


def test_watch_succeeds_when_nothing_changed(client, state):
    client.call("SET", "balance", "10")
    client.call("WATCH", "balance")
    new_client(state).call("GET", "balance")
    client.call("MULTI")
    client.call("SET", "balance", "0")
    assert client.call("EXEC") == [b"OK"]


def test_an_expiring_watched_key_aborts_exec(client, clock):
    client.call("SET", "k", "v", "PX", "100")
    client.call("WATCH", "k")
    clock.advance(1)
    client.call("MULTI")
    client.call("SET", "other", "x")
    assert client.call("EXEC") is NULL_ARRAY


def test_flushdb_touches_watched_keys(client, state):
    client.call("SET", "k", "v")
    client.call("WATCH", "k")
    new_client(state).call("FLUSHDB")
    client.call("MULTI")
    assert client.call("EXEC") is NULL_ARRAY


def test_watch_inside_multi_and_nesting_are_errors(client):
    client.call("MULTI")
    with pytest.raises(ErrorReply, match="WATCH inside MULTI"):
        client.call("WATCH", "k")
    with pytest.raises(ErrorReply, match="MULTI calls can not be nested"):
        client.call("MULTI")
    assert client.call("DISCARD") == b"OK"
    with pytest.raises(ErrorReply, match="EXEC without MULTI"):
        client.call("EXEC")


def test_publish_reaches_channel_and_pattern_subscribers(state):
    subscriber = new_client(state)
    publisher = new_client(state)
    subscriber.call("SUBSCRIBE", "news")
    subscriber.call("PSUBSCRIBE", "n*")
    assert publisher.call("PUBLISH", "news", "hello") == 2
    assert subscriber.pushes == [
        encode(Push([b"subscribe", b"news", 1]), False),
        encode(Push([b"psubscribe", b"n*", 2]), False),
        encode(Push([b"message", b"news", b"hello"]), False),
        encode(Push([b"pmessage", b"n*", b"news", b"hello"]), False),
    ]
    assert publisher.call("PUBSUB", "NUMSUB", "news", "none") == [b"news", 1, b"none", 0]
    assert publisher.call("PUBSUB", "NUMPAT") == 1
    assert publisher.call("PUBSUB", "CHANNELS") == [b"news"]


def test_resp2_subscribers_may_only_run_subscription_commands(state):
    subscriber = new_client(state)
    subscriber.call("SUBSCRIBE", "c")
    with pytest.raises(ErrorReply, match="only \\(P\\|S\\)SUBSCRIBE"):
        subscriber.call("GET", "k")
    assert subscriber.call("PING") == [b"pong", b""]
    subscriber.call("UNSUBSCRIBE")
    assert subscriber.call("GET", "k") is None


def test_resp3_subscribers_may_run_anything_and_get_push_frames(state):
    subscriber = new_client(state)
    subscriber.call("HELLO", "3")
    subscriber.call("SUBSCRIBE", "c")
    assert subscriber.call("GET", "k") is None
    new_client(state).call("PUBLISH", "c", "m")
    assert subscriber.pushes[-1] == b">3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$1\r\nm\r\n"


def test_client_subcommands(state):
    client = new_client(state)
    other = new_client(state)
    assert client.call("CLIENT", "ID") == client.session.id
    assert client.call("CLIENT", "SETNAME", "api") == b"OK"
    with pytest.raises(ErrorReply, match="Client names cannot contain spaces"):
        client.call("CLIENT", "SETNAME", "has space")
    assert client.call("CLIENT", "SETINFO", "LIB-NAME", "redis-py") == b"OK"
    assert client.call("CLIENT", "SETINFO", "LIB-VER", "8.1.0") == b"OK"
    listing = client.call("CLIENT", "LIST").decode()
    assert f"id={client.session.id} " in listing
    assert "name=api" in listing
    assert "lib-name=redis-py" in listing
    assert f"id={other.session.id} " in listing
    assert b"name=api" in client.call("CLIENT", "INFO")
    killed = []
    other.session.disconnect = lambda: killed.append(True)
    assert client.call("CLIENT", "KILL", "ID", str(other.session.id)) == 1
    assert killed == [True]
    with pytest.raises(ErrorReply, match="unknown subcommand 'NOPE'. Try CLIENT HELP."):
        client.call("CLIENT", "NOPE")


def test_config_get_set(client, state):
    assert dict(client.call("CONFIG", "GET", "maxclients")) == {b"maxclients": b"10000"}
    assert client.call("CONFIG", "SET", "maxclients", "50", "timeout", "30") == b"OK"
    assert state.config.maxclients == 50
    assert state.config.timeout == 30
    assert dict(client.call("CONFIG", "GET", "save", "appendonly")) == {b"save": b"", b"appendonly": b"no"}
    assert client.call("CONFIG", "SET", "hash-max-listpack-entries", "256") == b"OK"
    assert dict(client.call("CONFIG", "GET", "hash-max-listpack-*")) == {
        b"hash-max-listpack-entries": b"256",
        b"hash-max-listpack-value": b"64",
    }
    with pytest.raises(ErrorReply, match="can't set immutable config"):
        client.call("CONFIG", "SET", "databases", "4")
    with pytest.raises(ErrorReply, match="argument 'maxclients'"):
        client.call("CONFIG", "SET", "maxclients", "lots", "timeout", "5")
    assert state.config.timeout == 30  # nothing set when any value is bad
    client.call("CONFIG", "SET", "proto-max-bulk-len", "1mb")
    assert state.protocol_limits.max_bulk_length == 1024 * 1024


def test_info_reports_what_clients_read(client):
    client.call("SET", "k", "v", "EX", "100")
    text = client.call("INFO").decode()
    for field in (
        "redis_version:7.0.15",
        "atlas_version:",
        "arch_bits:64",
        "redis_mode:standalone",
        "connected_clients:1",
        "cluster_enabled:0",
        "db0:keys=1,expires=1",
    ):
        assert field in text
    assert "# Commandstats" not in text
    assert "cmdstat_set:calls=1" in client.call("INFO", "commandstats").decode()


def test_command_introspection(client):
    assert client.call("COMMAND", "COUNT") > 100
    info = client.call("COMMAND", "INFO", "get", "nosuch")
    assert info[0][:2] == [b"get", 2]
    assert info[1] is None
    docs = dict(client.call("COMMAND", "DOCS", "set"))
    assert dict(docs[b"set"])[b"group"] == b"string"
    assert client.call("COMMAND", "GETKEYS", "MSET", "a", "1", "b", "2") == [b"a", b"b"]


def test_unknown_commands_and_arity_use_redis_wording(client):
    with pytest.raises(ErrorReply, match="^ERR unknown command 'FOO', with args beginning with: 'x' $"):
        client.call("FOO", "x")
    with pytest.raises(ErrorReply, match="^ERR wrong number of arguments for 'get' command$"):
        client.call("GET")


def test_time_and_flushall(client):
    seconds, micros = client.call("TIME")
    assert int(seconds) > 1_600_000_000
    assert 0 <= int(micros) < 1_000_000
    client.call("SET", "a", "1")
    client.call("SELECT", "1")
    client.call("SET", "b", "1")
    assert client.call("FLUSHALL") == b"OK"
    assert client.call("DBSIZE") == 0
    client.call("SELECT", "0")
    assert client.call("DBSIZE") == 0
