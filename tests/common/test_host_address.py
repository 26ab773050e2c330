"""The address a wildcard listener is reached at: chosen from the routing table and
the interfaces' addresses, never loopback or link-local. Nothing here sends a packet."""

from __future__ import annotations

import ipaddress

from common.host_address import choose_primary_address, primary_address, url_host


def test_the_default_route_interface_comes_first() -> None:
    addresses = {"lo": ["127.0.0.1"], "eth1": ["198.51.100.9"], "eth0": ["192.0.2.7"]}
    assert choose_primary_address("eth0", addresses) == "192.0.2.7"
    assert choose_primary_address(None, addresses) == "198.51.100.9"


def test_loopback_link_local_and_junk_are_never_chosen() -> None:
    addresses = {"lo": ["127.0.0.1"], "eth0": ["169.254.3.4", "not an address", "fe80::1"]}
    assert choose_primary_address("eth0", addresses) is None
    assert choose_primary_address("eth0", {"eth0": ["169.254.3.4"], "br0": ["10.1.2.3"]}) == (
        "10.1.2.3"
    )


def test_this_hosts_primary_address_is_not_loopback() -> None:
    found = primary_address()
    if found is not None:
        address = ipaddress.ip_address(found)
        assert not address.is_loopback
        assert not address.is_link_local


def test_ipv6_literals_are_bracketed_in_urls() -> None:
    assert (url_host("fd00::5"), url_host("[fd00::5]"), url_host("node-a")) == (
        "[fd00::5]",
        "[fd00::5]",
        "node-a",
    )
