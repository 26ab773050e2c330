"""The client address behind trusted reverse proxies (header values only)."""

from __future__ import annotations

from ipaddress import ip_network

import pytest

from controlplane.security.proxies import client_address

PROXIES = [ip_network("10.0.0.0/8"), ip_network("::1/128")]


@pytest.mark.parametrize(
    ("peer", "forwarded", "expected"),
    [
        ("192.0.2.1", ["198.51.100.7"], "192.0.2.1"),  # peer not trusted: header ignored
        ("10.0.0.2", [], "10.0.0.2"),  # trusted peer, no header
        ("10.0.0.2", ["198.51.100.7"], "198.51.100.7"),
        ("10.0.0.2", ["198.51.100.1, 198.51.100.7, 10.1.1.1"], "198.51.100.7"),
        ("::1", ["198.51.100.1", "2001:db8::7"], "2001:db8::7"),  # several headers, in order
        ("10.0.0.2", ["10.0.0.3, 10.0.0.4"], "10.0.0.2"),  # only proxies: the peer
        ("10.0.0.2", ["not-an-address"], "10.0.0.2"),
        ("10.0.0.2", [" , 198.51.100.7 ,"], "198.51.100.7"),
        ("unknown", ["198.51.100.7"], "unknown"),
    ],
)
def test_rightmost_untrusted_forwarded_address(
    peer: str, forwarded: list[str], expected: str
) -> None:
    assert client_address(peer, forwarded, PROXIES) == expected


def test_without_trusted_proxies_the_peer_is_the_client() -> None:
    assert client_address("10.0.0.2", ["198.51.100.7"], []) == "10.0.0.2"
