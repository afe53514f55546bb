"""Which address a request comes from, believing X-Forwarded-For only from trusted proxies.

The socket's peer (REMOTE_ADDR) is the client unless it is a trusted proxy. Then X-Forwarded-For is
read from the right (the hop nearest to us) to the left, skipping trusted proxies: the first
address that is not one is the client. A malformed entry stops the walk, since everything to its
left was written by someone we cannot vouch for; so does the left end of the list.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from typing import Any

from accounts.conf import Network, rate_limit_settings

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_address(text: str) -> Address | None:
    """An IP address from a header or REMOTE_ADDR (IPv4-mapped IPv6 becomes IPv4); None if malformed."""
    text = text.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _trusted(address: Address, proxies: Iterable[Network]) -> bool:
    return any(address.version == network.version and address in network for network in proxies)


def client_address(meta: Mapping[str, Any], proxies: Iterable[Network]) -> str:
    """The client's address from a request's META, given the trusted proxy networks."""
    remote = str(meta.get("REMOTE_ADDR") or "")
    client = parse_address(remote)
    if client is None:
        return remote or "unknown"
    proxies = tuple(proxies)
    if not _trusted(client, proxies):
        return str(client)
    for hop in reversed(str(meta.get("HTTP_X_FORWARDED_FOR", "")).split(",")):
        address = parse_address(hop)
        if address is None:
            break
        client = address
        if not _trusted(address, proxies):
            break
    return str(client)


def request_client_address(request: Any) -> str:
    """client_address() of a Django or DRF request with the configured trusted proxies."""
    return client_address(request.META, rate_limit_settings().trusted_proxies)
