"""The address other machines (and their browsers) reach this host by, when a
service listens on a wildcard and nobody named one.

Read from the kernel's routing table and the interfaces' addresses only: finding it
sends no packet anywhere.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Mapping, Sequence
from pathlib import Path

import psutil

WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::", "[::]"})
_ROUTES = Path("/proc/net/route")


def is_wildcard(host: str) -> bool:
    """Whether `host` as a listen address means every address."""
    return host in WILDCARD_HOSTS


def url_host(host: str) -> str:
    """`host` as it stands in a URL's authority (IPv6 literals in brackets)."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def choose_primary_address(
    default_interface: str | None, addresses: Mapping[str, Sequence[str]]
) -> str | None:
    """The first usable IPv4 address of the default route's interface, else of any
    interface; None when there is none. Loopback and link-local addresses are never
    usable: a remote browser cannot reach them."""
    ordered = sorted(addresses, key=lambda name: name != default_interface)
    for name in ordered:
        for text in addresses[name]:
            try:
                address = ipaddress.ip_address(text)
            except ValueError:
                continue
            if address.version == 4 and not (address.is_loopback or address.is_link_local):
                return text
    return None


def _default_route_interface() -> str | None:
    try:
        lines = _ROUTES.read_text(encoding="ascii").splitlines()[1:]
    except OSError:
        return None
    for line in lines:
        fields = line.split()
        if len(fields) > 1 and fields[1] == "00000000":  # destination 0.0.0.0: the default
            return fields[0]
    return None


def primary_address() -> str | None:
    """This host's primary non-loopback IPv4 address (see choose_primary_address).

    Blocking (reads /proc): call before the event loop runs or from a thread."""
    interfaces = psutil.net_if_addrs()
    stats = psutil.net_if_stats()
    addresses = {
        name: [entry.address for entry in entries if entry.family == socket.AF_INET]
        for name, entries in interfaces.items()
        if name in stats and stats[name].isup
    }
    return choose_primary_address(_default_route_interface(), addresses)
