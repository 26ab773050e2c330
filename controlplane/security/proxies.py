"""Who the client is when requests come through reverse proxies we trust.

Behind a proxy every request's peer is the proxy, so per-client budgets (login rate
limits) would be shared by everyone. When the peer is in `trusted_proxies`, the client
is the rightmost `X-Forwarded-For` address that is not itself a trusted proxy (as
nginx's `real_ip_recursive` does): addresses left of it were written by the client and
prove nothing. From any other peer the header is ignored.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from ipaddress import IPv4Network, IPv6Network

Network = IPv4Network | IPv6Network


def _trusted(address: str, proxies: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in proxies)


def client_address(peer: str, forwarded_for: Sequence[str], proxies: Sequence[Network]) -> str:
    """The client's address, given the TCP peer and every `X-Forwarded-For` header's
    value (in the order received)."""
    if not proxies or not _trusted(peer, proxies):
        return peer
    hops = [hop.strip() for value in forwarded_for for hop in value.split(",")]
    for hop in reversed(hops):
        if not hop:
            continue
        if not _trusted(hop, proxies):
            try:
                return str(ipaddress.ip_address(hop))
            except ValueError:
                return peer  # garbage from a proxy we trust: fall back to the proxy
    return peer
