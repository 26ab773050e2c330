"""The agent's own Caddy, for real: started, configured over its unix admin socket,
restarted empty when it dies, and never fatal to the agent when it cannot start."""

from __future__ import annotations

import asyncio
import shutil
import urllib.error
import urllib.request
from pathlib import Path

import pytest

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
