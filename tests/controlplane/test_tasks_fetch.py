"""Fetching task inputs from URLs: a real HTTP server on 127.0.0.1, and the refusals."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from controlplane.tasks.fetch import (
    CheckedResolver,
    FetchFailed,
    FetchPolicy,
    FetchRefused,
    FetchTooLarge,
    address_refusal,
    fetch_url,
)
from tests.local_http import serve_app

OPEN = FetchPolicy(allow_private=True, max_bytes=1024, timeout_seconds=5)
CLOSED = FetchPolicy(max_bytes=1024, timeout_seconds=5)


@pytest.fixture
async def server() -> AsyncIterator[str]:
    async def small(request: web.Request) -> web.Response:
        return web.Response(body=b"hello input\n", content_type="text/plain")

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

    async def hop(request: web.Request) -> web.Response:
        raise web.HTTPFound(request.query["to"])

    async def missing(request: web.Request) -> web.Response:
        return web.Response(status=404)

    app = web.Application()
    app.router.add_get("/small.txt", small)
    app.router.add_get("/big", big)
    app.router.add_get("/chunked", big_chunked)
    app.router.add_get("/hop", hop)
    app.router.add_get("/missing", missing)
    async with serve_app(app) as url:
        yield url


async def test_fetches_from_loopback_when_private_is_allowed(server: str) -> None:
    fetched = await fetch_url(f"{server}/small.txt", OPEN)
    assert fetched.content == b"hello input\n"
    assert fetched.content_type.startswith("text/plain")


async def test_follows_redirects_with_each_hop_checked(server: str) -> None:
    fetched = await fetch_url(f"{server}/hop?to=/small.txt", OPEN)
    assert fetched.content == b"hello input\n"
    with pytest.raises(FetchRefused, match="only http and https"):
        await fetch_url(f"{server}/hop?to=file:///etc/passwd", OPEN)


async def test_refuses_loopback_without_the_setting(server: str) -> None:
    with pytest.raises(FetchRefused, match="loopback"):
        await fetch_url(f"{server}/small.txt", CLOSED)
    port = server.rsplit(":", 1)[1]
    # A name that resolves to loopback goes through the checking resolver.
    with pytest.raises(FetchRefused, match="loopback"):
        await fetch_url(f"http://localhost:{port}/small.txt", CLOSED)


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.org/file",
        "file:///etc/passwd",
        "http://user:pw@example.org/",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/",
        "http://10.0.0.1/",
    ],
)
async def test_refuses_schemes_credentials_and_private_literals(url: str) -> None:
    with pytest.raises(FetchRefused):
        await fetch_url(url, CLOSED)


async def test_size_cap_by_length_and_by_bytes_read(server: str) -> None:
    with pytest.raises(FetchTooLarge):
        await fetch_url(f"{server}/big", OPEN)
    with pytest.raises(FetchTooLarge):
        await fetch_url(f"{server}/chunked", OPEN)


async def test_error_status_is_a_failure(server: str) -> None:
    with pytest.raises(FetchFailed, match="404"):
        await fetch_url(f"{server}/missing", OPEN)


@pytest.mark.parametrize(
    ("address", "refused"),
    [
        ("127.0.0.1", True),
        ("10.1.2.3", True),
        ("172.16.0.1", True),
        ("192.168.1.1", True),
        ("169.254.169.254", True),
        ("100.64.0.1", True),
        ("224.0.0.1", True),
        ("0.0.0.0", True),
        ("240.0.0.1", True),
        ("::1", True),
        ("fe80::1", True),
        ("fc00::1", True),
        ("::ffff:127.0.0.1", True),
        ("8.8.8.8", False),
        ("2001:4860:4860::8888", False),
    ],
)
def test_address_classification(address: str, refused: bool) -> None:
    assert (address_refusal(ipaddress.ip_address(address)) is not None) is refused


async def test_resolver_pins_checked_addresses_and_refuses_mixed_answers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    answers: list[list[tuple[Any, ...]]] = [
        [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", 80))],
        [
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", 80)),
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", 80)),
        ],
    ]

    async def fake_getaddrinfo(*args: Any, **kwargs: Any) -> list[tuple[Any, ...]]:
        return answers.pop(0)

    loop = asyncio.get_running_loop()
    monkeypatch.setattr(loop, "getaddrinfo", fake_getaddrinfo)
    resolver = CheckedResolver(CLOSED)
    pinned = await resolver.resolve("files.example", 80)
    assert [r["host"] for r in pinned] == ["93.184.216.34"]
    assert pinned[0]["hostname"] == "files.example"
    with pytest.raises(FetchRefused, match="loopback"):
        await resolver.resolve("files.example", 80)
