"""The guarded outbound client against real HTTP servers on loopback.

A "public" server is played by an aiohttp app on 127.0.0.2, which the policy opens
explicitly (`allowed_networks`) while everything else private, 127.0.0.1 included, stays
refused: so a redirect from an allowed server to the loopback listener is a real
redirect that the client must refuse, and the listener proves nothing reached it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from blockbuster import blockbuster_ctx

from common.outbound import (
    GuardedConnector,
    OutboundFailed,
    OutboundPolicy,
    OutboundRefused,
    OutboundTooLarge,
    fetch_bytes,
    guarded_session,
)
from common.outbound_policy import address_refusal, checked_url, numeric_address
from tests.local_http import serve_app
from tests.outbound_support import (
    LOOPBACK_HOSTS,
    CountingListener,
    StaticResolver,
    counting_listener,
)

CLOSED = OutboundPolicy(max_bytes=1024, timeout_seconds=5)
OPEN = OutboundPolicy(allow_private=True, max_bytes=1024, timeout_seconds=5)
# 127.0.0.2 plays a public host; 127.0.0.1 (the listener) stays refused.
PUBLIC_ONLY = OutboundPolicy(
    allowed_networks=(ipaddress.IPv4Network("127.0.0.2/32"),), max_bytes=1024, timeout_seconds=5
)


@pytest.fixture(autouse=True)
def _no_blocking_calls() -> Iterator[None]:
    with blockbuster_ctx(["common"]):
        yield


@pytest.fixture
async def listener() -> AsyncIterator[CountingListener]:
    async with counting_listener() as state:
        yield state


@pytest.fixture
async def public() -> AsyncIterator[str]:
    """The allowed server on 127.0.0.2: /ok, /hop?to=<location>, /big, /chunked, /gone."""

    async def ok(request: web.Request) -> web.Response:
        return web.Response(text="public\n")

    async def hop(request: web.Request) -> web.Response:
        raise web.HTTPTemporaryRedirect(request.query["to"])

    async def big(request: web.Request) -> web.Response:
        return web.Response(body=b"x" * 4096)

    async def big_chunked(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        for _ in range(8):
            await response.write(b"y" * 512)
        await response.write_eof()
        return response

    async def gone(request: web.Request) -> web.Response:
        return web.Response(status=404)

    app = web.Application()
    for path, handler in (("/ok", ok), ("/hop", hop), ("/big", big), ("/chunked", big_chunked),
                          ("/gone", gone)):  # fmt: skip
        app.router.add_route("*", path, handler)
    async with serve_app(app, host="127.0.0.2") as url:
        yield url


@pytest.mark.parametrize("host", LOOPBACK_HOSTS)
async def test_every_spelling_of_loopback_is_refused(listener: CountingListener, host: str) -> None:
    with pytest.raises(OutboundRefused):
        await fetch_bytes(listener.url(host), CLOSED)
    async with guarded_session(CLOSED) as http:
        with pytest.raises(OutboundRefused):
            await http.post(listener.url(host), b"{}", {})
    assert listener.connections == 0


@pytest.mark.parametrize("host", LOOPBACK_HOSTS)
async def test_the_connector_itself_refuses_without_the_url_check(
    listener: CountingListener, host: str
) -> None:
    """A plain aiohttp session on the guarded connector: no URL pre-check at all, so
    the refusal comes from the resolver, the socket factory or the peer check."""
    connector = GuardedConnector(CLOSED, None)
    async with aiohttp.ClientSession(connector=connector) as session:
        with pytest.raises((OutboundRefused, aiohttp.InvalidURL, aiohttp.ClientConnectorError)):
            async with session.get(listener.url(host)):
                pass
    assert listener.connections == 0


@pytest.mark.parametrize(
    "host",
    ["10.0.0.1", "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1", "224.0.0.1",
     "240.0.0.1", "255.255.255.255", "[fe80::1]", "[fc00::1]", "[ff02::1]",
     "[::ffff:169.254.169.254]", "[64:ff9b::a00:1]", "０ｘａ９．２５４．１６９．２５４"],  # noqa: RUF001
)  # fmt: skip
async def test_private_and_special_addresses_are_refused_before_connecting(host: str) -> None:
    with pytest.raises(OutboundRefused):
        await fetch_bytes(f"http://{host}/", CLOSED)


async def test_names_are_checked_on_the_address_they_resolve_to(
    listener: CountingListener,
) -> None:
    names = StaticResolver({"public.test": ["127.0.0.1"], "mixed.test": ["8.8.8.8", "::1"]})
    async with guarded_session(CLOSED, names) as http:
        with pytest.raises(OutboundRefused, match="loopback"):
            await http.get_bytes(listener.url("public.test"))
        # One refused answer refuses the name: a mixed answer is a rebinding attempt.
        with pytest.raises(OutboundRefused, match="loopback"):
            await http.get_bytes(listener.url("mixed.test"))
        with pytest.raises(OutboundFailed, match="cannot resolve"):
            await http.get_bytes(listener.url("missing.test"))
    assert listener.connections == 0
    async with guarded_session(OPEN, names) as http:
        assert (await http.get_bytes(listener.url("public.test"))).content == b"loopback only\n"
    assert listener.connections == 1


@pytest.mark.parametrize("host", LOOPBACK_HOSTS)
async def test_redirects_from_an_allowed_server_to_loopback_are_refused(
    public: str, listener: CountingListener, host: str
) -> None:
    with pytest.raises(OutboundRefused):
        await fetch_bytes(f"{public}/hop?to={listener.url(host)}", PUBLIC_ONLY)
    assert listener.connections == 0


async def test_redirects_within_the_policy_are_followed(
    public: str, listener: CountingListener
) -> None:
    fetched = await fetch_bytes(f"{public}/hop?to=/ok", PUBLIC_ONLY)
    assert fetched.content == b"public\n"
    assert fetched.url == f"{public}/ok"
    names = StaticResolver({"public.test": ["127.0.0.2"], "inside.test": ["127.0.0.1"]})
    port = public.rsplit(":", 1)[1]
    async with guarded_session(PUBLIC_ONLY, names) as http:
        hop = f"http://public.test:{port}/hop?to="
        assert (await http.get_bytes(hop + "/ok")).content == b"public\n"
        with pytest.raises(OutboundRefused, match="loopback"):
            await http.get_bytes(hop + listener.url("inside.test"))
        with pytest.raises(OutboundRefused, match="only http and https"):
            await http.get_bytes(hop + "file:///etc/passwd")
        with pytest.raises(OutboundRefused, match="redirects"):
            await http.get_bytes(hop + f"{hop}{hop}{hop}{hop}{hop}{hop}/ok")
    assert listener.connections == 0


async def test_post_never_follows_redirects(public: str, listener: CountingListener) -> None:
    async with guarded_session(PUBLIC_ONLY) as http:
        status = await http.post(f"{public}/hop?to={listener.url('127.0.0.1')}", b"{}", {})
    assert status == 307
    assert listener.connections == 0


async def test_size_and_status_caps(public: str) -> None:
    with pytest.raises(OutboundTooLarge):
        await fetch_bytes(f"{public}/big", PUBLIC_ONLY)
    with pytest.raises(OutboundTooLarge):
        await fetch_bytes(f"{public}/chunked", PUBLIC_ONLY)
    with pytest.raises(OutboundFailed, match="404"):
        await fetch_bytes(f"{public}/gone", PUBLIC_ONLY)


async def test_fetch_to_file_writes_the_body_and_removes_a_partial_file(
    public: str, tmp_path: Path
) -> None:
    async with guarded_session(PUBLIC_ONLY) as http:
        saved = await http.fetch_to_file(f"{public}/hop?to=/ok", tmp_path / "ok.txt")
        assert saved.size == len(b"public\n")
        assert (tmp_path / "ok.txt").read_bytes() == b"public\n"
        with pytest.raises(OutboundTooLarge):
            await http.fetch_to_file(f"{public}/chunked", tmp_path / "big")
    assert not (tmp_path / "big").exists()


@pytest.mark.parametrize(
    "url", ["ftp://example.org/f", "file:///etc/passwd", "http://user:pw@example.org/", "http:///x"]
)
def test_urls_refused_before_connecting(url: str) -> None:
    with pytest.raises(OutboundRefused):
        checked_url(url, OPEN)


def test_url_credentials_only_where_the_policy_allows_them() -> None:
    operator = OutboundPolicy(allow_private=True, allow_url_credentials=True)
    assert checked_url("http://user:pw@10.0.0.1/hook", operator).user == "user"


@pytest.mark.parametrize(
    ("host", "address"),
    [("2130706433", "127.0.0.1"), ("0x7f.1", "127.0.0.1"), ("0177.0.0.1", "127.0.0.1"),
     ("[::1]", "::1"), ("fe80::1%eth0", "fe80::1"), ("10.0.0.1.", "10.0.0.1"),
     ("example.org", None), ("0x7g.1", None)],
)  # fmt: skip
def test_numeric_hosts_read_as_libc_reads_them(host: str, address: str | None) -> None:
    expected = ipaddress.ip_address(address) if address else None
    assert numeric_address(host) == expected


@pytest.mark.parametrize(
    ("address", "refused"),
    [("127.0.0.1", True), ("10.1.2.3", True), ("172.16.0.1", True), ("192.168.1.1", True),
     ("169.254.169.254", True), ("100.64.0.1", True), ("224.0.0.1", True), ("0.0.0.0", True),
     ("240.0.0.1", True), ("::1", True), ("fe80::1", True), ("fc00::1", True),
     ("::ffff:127.0.0.1", True), ("2002:a00:1::", True), ("64:ff9b::7f00:1", True),
     ("8.8.8.8", False), ("2001:4860:4860::8888", False), ("::ffff:8.8.8.8", False)],
)  # fmt: skip
def test_address_classification(address: str, refused: bool) -> None:
    assert (address_refusal(ipaddress.ip_address(address)) is not None) is refused


def test_allow_private_never_opens_unspecified_or_multicast() -> None:
    for address in ("0.0.0.0", "::", "224.0.0.1", "ff02::1"):
        assert OPEN.refusal(ipaddress.ip_address(address)) is not None
    assert OPEN.refusal(ipaddress.ip_address("127.0.0.1")) is None
    assert OPEN.refusal(ipaddress.ip_address("::1")) is None
