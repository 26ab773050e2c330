"""The agent's own Caddy, for real: started, configured over its unix admin socket,
restarted empty when it dies, and never fatal to the agent when it cannot start."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from agent.ingress.caddy import CaddyProxy, IngressUnavailable
from agent.ingress.caddy_config import CaddySettings
from common.ports import free_ports
from protos import agent_pb2 as pb

pytestmark = pytest.mark.skipif(shutil.which("caddy") is None, reason="caddy not installed")


def _status(port: int, host: str) -> int:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/", headers={"Host": host})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 (loopback)
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def _proxy(root: Path, binary: str = "caddy") -> tuple[CaddyProxy, int]:
    http_port, https_port = free_ports(2)
    socket = root / "run" / "admin.sock"
    settings = CaddySettings(
        f"unix/{socket}", http_port, https_port, str(root / "tls"), "127.0.0.1"
    )
    return CaddyProxy(binary, settings, root / "run"), http_port


async def test_table_applied_then_caddy_killed_comes_back_empty(tmp_path: Path) -> None:
    proxy, port = _proxy(tmp_path)
    running = asyncio.create_task(proxy.run())
    try:
        await asyncio.wait_for(proxy.ready.wait(), 15)
        assert await asyncio.to_thread(_status, port, "a.test") == 404
        table = pb.RouteTable(version=5, routes=[pb.Route(id="d", hosts=["a.test"], stopped=True)])
        assert await proxy.apply(table) == 5
        assert proxy.routes_version == 5
        assert await asyncio.to_thread(_status, port, "a.test") == 503
        assert (tmp_path / "run").stat().st_mode & 0o777 == 0o700
        first = proxy.process
        assert first is not None
        first.kill()
        await first.wait()
        await asyncio.wait_for(proxy.ready.wait(), 15)
        while proxy.process is first or not proxy.ready.is_set():
            await asyncio.sleep(0.05)
        # Restarted with nothing: version 0 tells the control plane to send it again.
        assert proxy.routes_version == 0
        assert await asyncio.to_thread(_status, port, "a.test") == 404
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
    assert proxy.process is None


async def test_a_missing_binary_is_logged_not_fatal(tmp_path: Path) -> None:
    proxy, _ = _proxy(tmp_path, binary=str(tmp_path / "no-such-caddy"))
    running = asyncio.create_task(proxy.run())
    await asyncio.sleep(0.5)
    assert not running.done()
    with pytest.raises(IngressUnavailable):
        await proxy.apply(pb.RouteTable(version=1))
    running.cancel()
    await asyncio.gather(running, return_exceptions=True)


@contextlib.asynccontextmanager
async def _routed(tmp_path: Path, app: web.Application) -> AsyncIterator[int]:
    """`app` on a loopback port behind a real Caddy as host `a.test`: Caddy's HTTP port."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    proxy, port = _proxy(tmp_path)
    running = asyncio.create_task(proxy.run())
    try:
        await asyncio.wait_for(proxy.ready.wait(), 15)
        host, upstream_port = runner.addresses[0][:2]
        route = pb.Route(
            id="d", hosts=["a.test"], upstreams=[pb.Upstream(address=f"{host}:{upstream_port}")]
        )
        await proxy.apply(pb.RouteTable(version=1, routes=[route]))
        yield port
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        await runner.cleanup()


def _upstream(release: asyncio.Event) -> web.Application:
    async def socket(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for message in ws:
            await ws.send_str("echo:" + message.data)
        return ws

    async def stream(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        await response.write(b"first\n")
        await release.wait()  # the rest only once the client saw the first part
        await response.write(b"second\n")
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_get("/ws", socket)
    app.router.add_get("/stream", stream)
    return app


async def test_websockets_and_streamed_responses_pass_through(tmp_path: Path) -> None:
    release = asyncio.Event()
    try:
        async with _routed(tmp_path, _upstream(release)) as port:
            headers = {"Host": "a.test"}
            url = f"http://127.0.0.1:{port}"
            async with aiohttp.ClientSession() as session:
                async with session.ws_connect(f"{url}/ws", headers=headers) as ws:
                    await ws.send_str("hi")
                    assert (await ws.receive_str(timeout=5)) == "echo:hi"
                async with session.get(f"{url}/stream", headers=headers) as response:
                    first = await asyncio.wait_for(response.content.readline(), 5)
                    assert first == b"first\n"
                    release.set()
                    assert await response.content.read() == b"second\n"
    finally:
        release.set()


class _CountingUpstream:
    """An upstream that answers a round of `size` requests only once all of them are
    in flight (so the proxy must hold `size` connections to it at once), and records
    the client address of every connection they came on."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.peers: set[tuple[str, int]] = set()
        self._arrived = 0
        self._full = asyncio.Event()

    def next_round(self) -> None:
        self._arrived = 0
        self._full = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        assert request.transport is not None
        self.peers.add(request.transport.get_extra_info("peername")[:2])
        self._arrived += 1
        if self._arrived == self.size:
            self._full.set()
        await asyncio.wait_for(self._full.wait(), 10)
        return web.Response(text="ok")


async def test_upstream_connections_are_reused_at_fifty_concurrent_requests(
    tmp_path: Path,
) -> None:
    """Caddy's default idle pool (32 per upstream) would close 18 of 50 connections
    after each round and dial them again: every round after the first reuses all."""
    concurrency = 50
    upstream = _CountingUpstream(concurrency)
    app = web.Application()
    app.router.add_get("/", upstream.handle)
    async with _routed(tmp_path, app) as port:
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as session:

            async def fetch() -> int:
                url = f"http://127.0.0.1:{port}/"
                async with session.get(url, headers={"Host": "a.test"}) as response:
                    await response.read()
                    return response.status

            for _ in range(3):
                upstream.next_round()
                statuses = await asyncio.gather(*(fetch() for _ in range(concurrency)))
                assert statuses == [200] * concurrency
                # Caddy pools a connection just after the client saw the answer's end.
                await asyncio.sleep(0.2)
    assert len(upstream.peers) == concurrency


async def test_one_failed_answer_does_not_take_an_apps_only_replica_away(
    tmp_path: Path,
) -> None:
    """A replica is left out after repeated failures, not after one: a single 502 (or a
    dial that timed out once) must not turn the next 10 s of an app with one replica
    into 503s."""
    answers = iter([502])

    async def handle(request: web.Request) -> web.Response:
        return web.Response(status=next(answers, 200), text="answer")

    app = web.Application()
    app.router.add_get("/", handle)
    async with _routed(tmp_path, app) as port:
        assert await asyncio.to_thread(_status, port, "a.test") == 502
        assert await asyncio.to_thread(_status, port, "a.test") == 200
