"""Which address a request comes from: X-Forwarded-For believed only from trusted proxies."""

from __future__ import annotations

import ipaddress

import pytest

from accounts.client_ip import client_address
from accounts.ratelimit import bucket_identity
from helios_site.config import ConfigError, load

LOOPBACK = (ipaddress.ip_network("127.0.0.1/32"), ipaddress.ip_network("::1/128"))
PROXIES = (*LOOPBACK, ipaddress.ip_network("10.0.0.0/8"))


def meta(remote: str, forwarded: str | None = None) -> dict[str, str]:
    values = {"REMOTE_ADDR": remote}
    if forwarded is not None:
        values["HTTP_X_FORWARDED_FOR"] = forwarded
    return values


@pytest.mark.parametrize(
    ("remote", "forwarded", "client"),
    [
        # A direct client: its own address, whatever it claims.
        ("203.0.113.9", None, "203.0.113.9"),
        ("203.0.113.9", "1.2.3.4", "203.0.113.9"),
        # Behind the proxy on loopback: the address the proxy appended.
        ("127.0.0.1", "203.0.113.9", "203.0.113.9"),
        ("::1", "203.0.113.9", "203.0.113.9"),
        # A forged entry to the left of the real one is not believed.
        ("127.0.0.1", "1.2.3.4, 203.0.113.9", "203.0.113.9"),
        # Several trusted hops are skipped, from the right.
        ("127.0.0.1", "203.0.113.9, 10.1.2.3", "203.0.113.9"),
        ("127.0.0.1", "1.2.3.4, 203.0.113.9, 10.1.2.3, 10.9.9.9", "203.0.113.9"),
        # Every hop trusted: the leftmost one.
        ("127.0.0.1", "10.1.2.3", "10.1.2.3"),
        # The proxy sent nothing: the proxy is the client.
        ("127.0.0.1", None, "127.0.0.1"),
        ("127.0.0.1", "", "127.0.0.1"),
        # Garbage stops the walk at the last hop we can vouch for.
        ("127.0.0.1", "203.0.113.9, garbage", "127.0.0.1"),
        ("127.0.0.1", "garbage, 10.1.2.3", "10.1.2.3"),
        ("127.0.0.1", "garbage, 203.0.113.9", "203.0.113.9"),
        # Forms of addresses.
        ("127.0.0.1", "[2001:db8::1]", "2001:db8::1"),
        ("::ffff:127.0.0.1", "203.0.113.9", "203.0.113.9"),
        ("::ffff:203.0.113.9", "1.2.3.4", "203.0.113.9"),
    ],
)
def test_client_address(remote, forwarded, client):
    assert client_address(meta(remote, forwarded), PROXIES) == client


def test_nothing_is_trusted_without_proxies():
    assert client_address(meta("127.0.0.1", "203.0.113.9"), ()) == "127.0.0.1"


def test_a_missing_or_odd_remote_address_is_kept_as_is():
    assert client_address({}, PROXIES) == "unknown"
    assert client_address(meta("unix-socket"), PROXIES) == "unix-socket"


def test_ipv6_clients_share_a_bucket_per_64():
    assert bucket_identity("2001:db8:1:2:aaaa::1") == bucket_identity("2001:db8:1:2:bbbb::2") == "2001:db8:1:2::/64"
    assert bucket_identity("2001:db8:1:3::1") != bucket_identity("2001:db8:1:2::1")
    assert bucket_identity("203.0.113.9") == "203.0.113.9"


def test_trusted_proxies_setting_parses_networks_and_refuses_garbage():
    config = load({"HELIOS_GATEWAY_TRUSTED_PROXIES": "10.0.0.0/8, 192.168.1.7 ,::1"})
    assert config.get("gateway.trusted_proxies") == ["10.0.0.0/8", "192.168.1.7/32", "::1/128"]
    assert load({}).get("gateway.trusted_proxies") == ["127.0.0.1/32", "::1/128"]
    with pytest.raises(ConfigError, match="HELIOS_GATEWAY_TRUSTED_PROXIES.*not-an-ip"):
        load({"HELIOS_GATEWAY_TRUSTED_PROXIES": "10.0.0.1,not-an-ip"}).get("gateway.trusted_proxies")
