"""The one HTTP client for requests the product makes on a tenant's behalf (task input
URLs, per-account webhooks, and later file pulls, domain checks, release assets).

Usage::

    async with guarded_session(policy) as http:
        fetched = await http.get_bytes(url)          # FetchedBody
        saved = await http.fetch_to_file(url, dest)  # FetchedFile
        status = await http.post(url, body, headers)

Guarantees (policy rules in :mod:`common.outbound_policy`):

- every connection's address is checked where it is made, whatever the URL's text:
  names resolve through a resolver that refuses the whole name if any answer is
  refused (a mixed answer is a rebinding attempt) and the connection uses exactly the
  checked answers; the socket factory checks the numeric address it is about to
  connect to (so literal addresses, which skip the resolver, are covered); and the
  connected socket's peer address is checked again before a byte is sent;
- redirects are followed by hand for GET (at most ``max_redirects``), each hop's URL
  checked like the first, and never for POST;
- bodies are capped at ``max_bytes`` (the declared length and the bytes read), a whole
  request including redirects at ``timeout_seconds``; no proxy from the environment.

Every method raises only :class:`OutboundRefused` (policy; do not retry),
:class:`OutboundTooLarge` and :class:`OutboundFailed` (no usable answer; may retry).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.client_reqrep import ClientRequest
from aiohttp.connector import Connection
from aiohttp.tracing import Trace
from yarl import URL

from common.outbound_policy import (
    OutboundError,
    OutboundFailed,
    OutboundPolicy,
    OutboundRefused,
    OutboundTooLarge,
    checked_url,
    numeric_address,
)

__all__ = [
    "FetchedBody",
    "FetchedFile",
    "GuardedSession",
    "OutboundError",
    "OutboundFailed",
    "OutboundPolicy",
    "OutboundRefused",
    "OutboundTooLarge",
    "fetch_bytes",
    "guarded_session",
]

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_CHUNK = 64 * 1024


@dataclass(frozen=True, slots=True)
class FetchedBody:
    """The body of a URL (after redirects) and its declared type."""

    url: str
    content: bytes
    content_type: str


@dataclass(frozen=True, slots=True)
class FetchedFile:
    """A URL's body written to `path` (after redirects)."""

    url: str
    path: Path
    size: int
    content_type: str


def _refuse_address(host: str, policy: OutboundPolicy) -> None:
    address = numeric_address(host)
    if address is None:
        raise OutboundRefused(f"{host!r} is not a numeric address")
    refusal = policy.refusal(address)
    if refusal is not None:
        raise OutboundRefused(refusal)


class GuardedResolver(AbstractResolver):
    """Resolves with `inner` (the system resolver by default) and returns the answers
    only when every one of them passes the policy; aiohttp connects to exactly those.
    A given `inner` stays its owner's to close."""

    def __init__(self, policy: OutboundPolicy, inner: AbstractResolver | None = None) -> None:
        self._policy = policy
        self._owns_inner = inner is None
        self._inner = inner or aiohttp.ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_UNSPEC
    ) -> list[ResolveResult]:
        answers = await self._inner.resolve(host, port, family)
        for answer in answers:
            try:
                _refuse_address(answer["host"], self._policy)
            except OutboundRefused as exc:
                raise OutboundRefused(f"{host} resolves to a refused address: {exc}") from None
        return answers

    async def close(self) -> None:
        if self._owns_inner:
            await self._inner.close()


class GuardedConnector(aiohttp.TCPConnector):
    """A TCP connector that checks the address of every socket it opens (before
    connecting) and the peer of every connection it hands out (new or pooled)."""

    def __init__(self, policy: OutboundPolicy, resolver: AbstractResolver | None) -> None:
        self._policy = policy

        def checked_socket(addr_info: Any) -> socket.socket:
            family, kind, proto, _, sockaddr = addr_info
            _refuse_address(str(sockaddr[0]), policy)
            return socket.socket(family, kind, proto)

        super().__init__(
            resolver=GuardedResolver(policy, resolver),
            use_dns_cache=False,
            socket_factory=checked_socket,
        )

    async def connect(
        self,
        req: ClientRequest,
        traces: list[Trace],
        timeout: aiohttp.ClientTimeout,  # noqa: ASYNC109 (aiohttp's signature)
    ) -> Connection:
        connection = await super().connect(req, traces, timeout)
        transport = connection.transport
        peer = transport.get_extra_info("peername") if transport is not None else None
        try:
            if not peer:
                raise OutboundRefused("the connection has no peer address")
            _refuse_address(str(peer[0]), self._policy)
        except OutboundRefused:
            connection.close()
            raise
        return connection


@contextlib.contextmanager
def _translated_errors(url: str | URL, timeout: float) -> Iterator[None]:
    """aiohttp's and the socket layer's errors as OutboundFailed."""
    try:
        yield
    except OutboundError:
        raise
    except TimeoutError as exc:
        raise OutboundFailed(f"{url} took longer than {timeout:g}s") from exc
    except aiohttp.ClientConnectorDNSError as exc:
        raise OutboundFailed(f"cannot resolve {exc.host}: {exc.os_error}") from exc
    except aiohttp.InvalidURL as exc:
        raise OutboundRefused(f"the URL is not valid: {exc}") from exc
    except (aiohttp.ClientError, OSError) as exc:
        raise OutboundFailed(f"{url} failed: {exc}") from exc


async def _read_capped(response: aiohttp.ClientResponse, max_bytes: int) -> AsyncIterator[bytes]:
    declared = response.content_length
    if declared is not None and declared > max_bytes:
        raise OutboundTooLarge(f"the body is {declared} bytes, more than the {max_bytes} allowed")
    size = 0
    async for chunk in response.content.iter_chunked(_CHUNK):
        size += len(chunk)
        if size > max_bytes:
            raise OutboundTooLarge(f"the body is larger than the {max_bytes} bytes allowed")
        yield chunk


class GuardedSession:
    """An HTTP session whose every connection obeys `policy` (see the module doc).

    Open it with :func:`guarded_session`, or keep one for a component's lifetime and
    :meth:`close` it when done. `resolver` replaces the system resolver (tests map
    names with it); its answers are checked like the system's.
    """

    def __init__(self, policy: OutboundPolicy, resolver: AbstractResolver | None = None) -> None:
        self.policy = policy
        self._resolver = resolver
        self._session: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=GuardedConnector(self.policy, self._resolver),
                timeout=aiohttp.ClientTimeout(total=self.policy.timeout_seconds),
                trust_env=False,
            )
        return self._session

    async def close(self) -> None:
        """Close the connections; the session may be used again afterwards."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    @contextlib.asynccontextmanager
    async def _final_response(self, url: str) -> AsyncIterator[aiohttp.ClientResponse]:
        current = checked_url(url, self.policy)
        for _ in range(self.policy.max_redirects + 1):
            async with self._http().get(current, allow_redirects=False) as response:
                if response.status not in REDIRECT_STATUSES:
                    if response.status >= 400:
                        raise OutboundFailed(f"{current} answered {response.status}")
                    yield response
                    return
                location = response.headers.get("Location")
                if not location:
                    raise OutboundFailed(f"{current} redirected without a Location")
                current = checked_url(current.join(URL(location)), self.policy)
        raise OutboundRefused(f"more than {self.policy.max_redirects} redirects")

    async def get_bytes(self, url: str) -> FetchedBody:
        """GET `url` (following checked redirects) and return its body."""
        policy = self.policy
        with _translated_errors(url, policy.timeout_seconds):
            async with asyncio.timeout(policy.timeout_seconds), self._final_response(url) as resp:
                content = b"".join([c async for c in _read_capped(resp, policy.max_bytes)])
                return FetchedBody(str(resp.url), content, resp.headers.get("Content-Type", ""))

    async def fetch_to_file(self, url: str, dest: Path) -> FetchedFile:
        """GET `url` into the file `dest` (created or truncated; removed again when the
        fetch fails). File writes run in a thread."""
        policy = self.policy
        handle: BinaryIO = await asyncio.to_thread(dest.open, "wb")
        size = 0
        try:
            with _translated_errors(url, policy.timeout_seconds):
                async with (
                    asyncio.timeout(policy.timeout_seconds),
                    self._final_response(url) as resp,
                ):
                    async for chunk in _read_capped(resp, policy.max_bytes):
                        await asyncio.to_thread(handle.write, chunk)
                        size += len(chunk)
                    content_type = resp.headers.get("Content-Type", "")
                    final_url = str(resp.url)
        except BaseException:
            await asyncio.to_thread(handle.close)
            await asyncio.to_thread(dest.unlink, True)
            raise
        await asyncio.to_thread(handle.close)
        return FetchedFile(final_url, dest, size, content_type)

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> int:
        """POST `body` to `url` and return the status; redirects are never followed
        (a 3xx is returned as is). At most `max_bytes` of the answer are read, then
        dropped."""
        policy = self.policy
        target = checked_url(url, policy)
        with _translated_errors(url, policy.timeout_seconds):
            async with (
                asyncio.timeout(policy.timeout_seconds),
                self._http().post(
                    target, data=body, headers=dict(headers), allow_redirects=False
                ) as response,
            ):
                read = 0
                async for chunk in response.content.iter_chunked(_CHUNK):
                    read += len(chunk)
                    if read > policy.max_bytes:
                        break
                return response.status


@contextlib.asynccontextmanager
async def guarded_session(
    policy: OutboundPolicy, resolver: AbstractResolver | None = None
) -> AsyncIterator[GuardedSession]:
    """A :class:`GuardedSession` closed on exit."""
    session = GuardedSession(policy, resolver)
    try:
        yield session
    finally:
        await session.close()


async def fetch_bytes(url: str, policy: OutboundPolicy) -> FetchedBody:
    """GET one URL with a session of its own (see :meth:`GuardedSession.get_bytes`)."""
    async with guarded_session(policy) as http:
        return await http.get_bytes(url)
