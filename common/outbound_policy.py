"""What an outbound request made for a tenant may reach: the address rules, read the
way the socket layer reads an address, and the URL checks that need no network.

Pure functions with no I/O; :mod:`common.outbound` applies them to every connection.

Address rules (:func:`address_refusal`):

- never: unspecified (``0.0.0.0`` and ``::`` reach the local host), multicast and
  reserved ranges; these are not unicast destinations of any service;
- only with ``allow_private`` or a matching ``allowed_networks`` entry: loopback,
  private (RFC 1918, ULA), link-local (cloud metadata at 169.254.169.254), shared
  CGNAT 100.64/10 and every other range that is not globally reachable;
- an IPv6 address that embeds an IPv4 one (IPv4-mapped ``::ffff:a.b.c.d``, 6to4,
  Teredo, NAT64 ``64:ff9b::/96``) is judged by the IPv4 address as well.

Host text is read as the HTTP client and libc read it: yarl's IDNA/Unicode
normalisation first (full-width digits and dots become ASCII), trailing dots dropped,
and the legacy IPv4 forms that ``inet_aton`` accepts (``2130706433``, ``0x7f.1``,
``0177.0.0.1``, ``127.1``) recognised as the address they denote.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass

from yarl import URL

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_LEGACY_IPV4 = re.compile(r"^[0-9a-fx.]+$")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


class OutboundError(Exception):
    """An outbound request did not produce a usable answer (base class)."""


class OutboundRefused(OutboundError):
    """The policy forbids the request (scheme, credentials, address, redirects).
    Trying again cannot help."""


class OutboundTooLarge(OutboundError):
    """The answer is bigger than the cap."""


class OutboundFailed(OutboundError):
    """No usable answer: the name did not resolve, the connection failed or timed out,
    or the server answered with an error status. Trying again later may help."""


@dataclass(frozen=True, slots=True)
class OutboundPolicy:
    """What outbound requests may do.

    `allow_private` opens loopback and private ranges (tests, labs); `allowed_networks`
    opens just those networks (an internal mirror, say). Neither opens unspecified,
    multicast or reserved addresses. `max_bytes` caps an answer's body,
    `timeout_seconds` a whole request including its redirects. User info in URLs
    (`http://user:pw@host/`) is refused unless `allow_url_credentials` (the operator's
    own URLs, not tenants').
    """

    allow_private: bool = False
    allowed_networks: tuple[IPNetwork, ...] = ()
    allow_url_credentials: bool = False
    max_bytes: int = 8 * 1024 * 1024
    timeout_seconds: float = 30.0
    max_redirects: int = 5

    def refusal(self, address: IPAddress) -> str | None:
        """Why a connection to `address` is refused under this policy, or None."""
        address = _unmapped(address)
        never = _never_reachable(address)
        if never is not None:
            return never
        if self.allow_private or any(address in net for net in self.allowed_networks):
            return None
        return address_refusal(address)


def _unmapped(address: IPAddress) -> IPAddress:
    """`::ffff:a.b.c.d` is a connection to a.b.c.d: judge that address."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def _never_reachable(address: IPAddress) -> str | None:
    for refused, reason in (
        (address.is_unspecified, "unspecified"),
        (address.is_multicast, "multicast"),
        (address.is_reserved and not address.is_loopback, "reserved"),
    ):
        if refused:
            return f"{reason} address {address} is not allowed"
    return None


def address_refusal(address: IPAddress) -> str | None:
    """Why `address` is not a public unicast address, or None when it is (IPv6
    addresses that embed an IPv4 one are judged by that one too)."""
    address = _unmapped(address)
    embedded = _embedded_ipv4(address)
    if embedded is not None and address_refusal(embedded) is not None:
        return f"{address} embeds a refused address: {address_refusal(embedded)}"
    never = _never_reachable(address)
    if never is not None:
        return never
    for refused, reason in (
        (address.is_loopback, "loopback"),
        (address.is_link_local, "link-local"),
        (address.is_private, "private"),
        (not address.is_global, "non-public"),
    ):
        if refused:
            return f"{reason} address {address} is not allowed"
    return None


def numeric_address(host: str) -> IPAddress | None:
    """The address that `host` denotes as a numeric literal, read as libc reads it
    (brackets, an IPv6 zone, trailing dots and inet_aton's legacy IPv4 forms
    included), or None when `host` is a name."""
    text = host.strip("[]").rstrip(".").lower().split("%", 1)[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        pass
    if text and _LEGACY_IPV4.match(text):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(text))
        except OSError:
            return None
    return None


def checked_url(url: str | URL, policy: OutboundPolicy) -> URL:
    """The normalised URL when what can be refused before connecting is not: only
    http(s), a host, no credentials, no refused numeric host. Names are checked when
    they resolve (:mod:`common.outbound`). Raises OutboundRefused."""
    try:
        parsed = url if isinstance(url, URL) else URL(url)
        host = parsed.raw_host
    except (ValueError, UnicodeError) as exc:
        raise OutboundRefused(f"the URL is not valid: {exc}") from exc
    if parsed.scheme not in ("http", "https"):
        raise OutboundRefused(f"only http and https URLs may be fetched, not {parsed.scheme!r}")
    if not host:
        raise OutboundRefused("the URL has no host")
    credentials = parsed.raw_user is not None or parsed.raw_password is not None
    if credentials and not policy.allow_url_credentials:
        raise OutboundRefused("credentials in URLs are not allowed")
    literal = numeric_address(host)
    if literal is not None:
        refusal = policy.refusal(literal)
        if refusal is not None:
            raise OutboundRefused(refusal)
    return parsed
