"""Pulling a URL into a server directory: the real agent refuses every spelling of its
own host (the guarded outbound client's SSRF rules) before connecting; with private
addresses allowed (a lab policy), a pull streams into place, owned by the container's
user, within the disk limit, and never through a symlink leading out."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from common.outbound import OutboundPolicy
from tests.agent.files.conftest import FileAgent, file_api_alone
from tests.outbound_support import LOOPBACK_HOSTS, counting_listener

PAYLOAD = os.urandom(3 * 1024 * 1024 + 1)


async def test_the_agent_refuses_urls_of_its_own_host(file_agent: FileAgent) -> None:
    async with counting_listener() as listener:
        for host in LOOPBACK_HOSTS:
            status, answer = await file_agent.op(
                "pull", {"url": listener.url(host, "/secret"), "path": "/stolen"}
            )
            assert (status, answer["error"]["code"]) == (422, "url_refused"), (host, answer)
        for url in ("file:///etc/passwd", "ftp://example.com/x", "http://user:pw@example.com/"):
            status, answer = await file_agent.op("pull", {"url": url, "path": "/stolen"})
            assert (status, answer["error"]["code"]) == (422, "url_refused"), url
        assert listener.connections == 0
    assert not (file_agent.server_dir / "stolen").exists()


@pytest.fixture
async def origin() -> AsyncIterator[str]:
    """A loopback HTTP server: /file answers PAYLOAD, /hop redirects to it."""

    async def serve(_request: web.Request) -> web.Response:
        return web.Response(body=PAYLOAD)

    async def hop(_request: web.Request) -> web.Response:
        raise web.HTTPFound("/file")

    app = web.Application()
    app.router.add_get("/file", serve)
    app.router.add_get("/hop", hop)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


async def test_a_pull_streams_into_place(origin: str, tmp_path: Path) -> None:
    async with file_api_alone(
        tmp_path,
        owner_of=lambda _server_id: (988, 988),
        disk_limit_of=lambda _server_id: 7 * 1024 * 1024,
        pull_policy=OutboundPolicy(allow_private=True, max_bytes=64 * 1024 * 1024),
    ) as files:
        os.symlink("/etc", files.server_dir / "etc")
        status, answer = await files.op("pull", {"url": f"{origin}/hop", "path": "/got.bin"})
        assert (status, answer["size"], answer["url"]) == (200, len(PAYLOAD), f"{origin}/file")
        got = files.server_dir / "got.bin"
        assert got.read_bytes() == PAYLOAD
        assert (got.stat().st_uid, got.stat().st_gid) == (988, 988)

        status, answer = await files.op("pull", {"url": f"{origin}/file", "path": "etc/x"})
        assert (status, answer["error"]["code"]) == (403, "outside_server_directory")
        assert not Path("/etc/x").exists()
        # The refused pull charged nothing: a second fits the 7 MiB limit, a third not.
        status, _ = await files.op("pull", {"url": f"{origin}/file", "path": "/second"})
        assert status == 200
        status, answer = await files.op("pull", {"url": f"{origin}/file", "path": "/again"})
        assert (status, answer["error"]["code"]) == (507, "disk_limit_reached")
        assert not (files.server_dir / "again").exists()
        assert os.listdir(tmp_path / "pulls") == []  # nothing staged is left behind
