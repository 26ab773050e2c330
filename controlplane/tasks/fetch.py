"""Fetching task input files from URLs without letting a user reach internal hosts.

Rules (each refusal is a :class:`FetchRefused` whose message says why):

- only ``http`` and ``https`` URLs, without credentials in them;
- every address the host name resolves to must be public: loopback, private,
  link-local, multicast, reserved, unspecified and shared (CGNAT) ranges are refused,
  IPv4-mapped IPv6 included, unless the policy allows private addresses;
- the name is resolved once and the connection goes to the address that was checked
  (a resolver that pins the answer), so a DNS rebinding answer cannot sneak in;
- redirects are followed by hand (at most ``max_redirects``), each hop re-checked;
- the body is capped at ``max_bytes`` (Content-Length and the bytes actually read),
  and the whole fetch at ``timeout_seconds``. No proxy from the environment is used.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class FetchRefused(ValueError):
    """The URL may not be fetched (scheme, address, redirect policy)."""


class FetchTooLarge(ValueError):
    """The response is bigger than the cap."""


class FetchFailed(ValueError):
    """The server could not be reached or answered with an error status."""


@dataclass(frozen=True, slots=True)
class FetchPolicy:
    """What fetching may do; `allow_private` opens loopback/private ranges (tests, labs)."""

    allow_private: bool = False
    max_bytes: int = 8 * 1024 * 1024
    timeout_seconds: float = 30.0
    max_redirects: int = 5


@dataclass(frozen=True, slots=True)
class FetchedFile:
    """The body of a URL and what the server said about it."""

    url: str
    content: bytes
    content_type: str


def address_refusal(address: IPAddress) -> str | None:
    """Why `address` is not a public unicast address, or None when it is."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address_refusal(address.ipv4_mapped)
    checks = (
        (address.is_loopback, "loopback"),
        (address.is_link_local, "link-local"),
        (address.is_multicast, "multicast"),
        (address.is_unspecified, "unspecified"),
        (address.is_reserved, "reserved"),
        (address.is_private, "private"),
        (not address.is_global, "non-public"),
    )
    for refused, reason in checks:
        if refused:
            return f"{reason} address {address} is not allowed"
    return None


class CheckedResolver(AbstractResolver):
    """Resolves with the system resolver once per connection and returns only addresses
    that pass the policy: aiohttp then connects to exactly those."""

    def __init__(self, policy: FetchPolicy) -> None:
        self._policy = policy

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(
                host, port, type=socket.SOCK_STREAM, family=socket.AF_UNSPEC
            )
        except socket.gaierror as exc:
            raise FetchFailed(f"cannot resolve {host}: {exc.strerror}") from exc
        results: list[ResolveResult] = []
        for fam, _, proto, _, sockaddr in infos:
            address = ipaddress.ip_address(sockaddr[0])
            refusal = None if self._policy.allow_private else address_refusal(address)
            if refusal is not None:
                # One bad answer refuses the name: a mixed answer is a rebinding attempt.
                raise FetchRefused(f"{host}: {refusal}")
            results.append(
                ResolveResult(
                    hostname=host,
                    host=str(address),
                    port=port,
                    family=fam,
                    proto=proto,
                    flags=socket.AI_NUMERICHOST,
                )
            )
        if not results:
            raise FetchFailed(f"cannot resolve {host}")
        return results

    async def close(self) -> None:
        return None


def check_url(url: str, policy: FetchPolicy) -> None:
    """Refuse what can be refused before connecting: scheme, credentials, literal IPs."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise FetchRefused(f"only http and https URLs may be fetched, not {parts.scheme!r}")
    if not parts.hostname:
        raise FetchRefused("the URL has no host")
    if parts.username or parts.password:
        raise FetchRefused("credentials in URLs are not allowed")
    try:
        literal: IPAddress | None = ipaddress.ip_address(parts.hostname)
    except ValueError:
        literal = None
    # aiohttp skips the resolver for literal addresses, so they are checked here.
    if literal is not None and not policy.allow_private:
        refusal = address_refusal(literal)
        if refusal is not None:
            raise FetchRefused(refusal)


async def fetch_url(url: str, policy: FetchPolicy) -> FetchedFile:
    """GET `url` under `policy` (see module doc); raises FetchRefused/TooLarge/Failed."""
    connector = aiohttp.TCPConnector(resolver=CheckedResolver(policy), use_dns_cache=False)
    timeout = aiohttp.ClientTimeout(total=policy.timeout_seconds)
    try:
        async with aiohttp.ClientSession(
            connector=connector, timeout=timeout, trust_env=False
        ) as session:
            return await asyncio.wait_for(
                _follow(session, url, policy), timeout=policy.timeout_seconds
            )
    except TimeoutError as exc:
        raise FetchFailed(f"fetching {url} took longer than {policy.timeout_seconds:g}s") from exc
    except aiohttp.ClientError as exc:
        raise FetchFailed(f"fetching {url} failed: {exc}") from exc


async def _follow(session: aiohttp.ClientSession, url: str, policy: FetchPolicy) -> FetchedFile:
    current = url
    for _ in range(policy.max_redirects + 1):
        check_url(current, policy)
        async with session.get(current, allow_redirects=False) as response:
            if response.status in (301, 302, 303, 307, 308):
                location = response.headers.get("Location")
                if not location:
                    raise FetchFailed(f"{current} redirected without a Location")
                current = urljoin(current, location)
                continue
            if response.status >= 400:
                raise FetchFailed(f"{current} answered {response.status}")
            content = await _read_capped(response, policy.max_bytes)
            return FetchedFile(current, content, response.headers.get("Content-Type", ""))
    raise FetchRefused(f"more than {policy.max_redirects} redirects")


async def _read_capped(response: aiohttp.ClientResponse, max_bytes: int) -> bytes:
    declared = response.content_length
    if declared is not None and declared > max_bytes:
        raise FetchTooLarge(f"the file is {declared} bytes, more than the {max_bytes} allowed")
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > max_bytes:
            raise FetchTooLarge(f"the file is larger than the {max_bytes} bytes allowed")
        chunks.append(chunk)
    return b"".join(chunks)


def describe(exc: Exception) -> dict[str, Any]:
    """A short machine-readable form of a fetch error for API error details."""
    kind = "failed"
    if isinstance(exc, FetchRefused):
        kind = "refused"
    elif isinstance(exc, FetchTooLarge):
        kind = "too_large"
    return {"reason": kind, "message": str(exc)}
