"""The browser console WebSocket on the agent's HTTP port."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from agent.config import Console
from agent.daemon import RunningAgent
from common.tokens import sign_server_token
from protos import agent_pb2 as pb
from tests.agent.conftest import ECHO, SECRET, agent_in_background, make_config, spec
from tests.agent.ws_support import next_frame

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("no_blocking_calls")]
ORIGIN = "https://panel.example.test"


def token(agent: RunningAgent, server: str, scope: Any = "console", **kw: Any) -> str:
    return sign_server_token(
        SECRET,
        node_id=agent.identity.node_id,
        user_id="user-1",
        server_id=server,
        permissions=kw.pop("permissions", ["*"]),
        scope=scope,
        **kw,
    )


@pytest.fixture
async def agent(tmp_path: Path) -> Any:
    config = make_config(
        tmp_path / "skyhook",
        f"node-{uuid.uuid4().hex[:8]}",
        console={
            "ws_allowed_origins": [ORIGIN],
            "ws_max_sockets_per_server": 2,
            "ws_max_unauthenticated_per_address": 2,
        },
    )
    async with agent_in_background(config) as running:
        yield running


async def test_install_output_has_its_own_event(agent: RunningAgent) -> None:
    s = spec("echo booted; " + ECHO)
    s.install.CopyFrom(pb.InstallScript(image=s.image, entrypoint="sh", script="echo fetching"))
    await agent.supervisor.create(s, start=True)
    url = f"http://127.0.0.1:{agent.http.port}/api/servers/{s.id}/ws"
    async with aiohttp.ClientSession() as http, http.ws_connect(url, origin=ORIGIN) as ws:
        await ws.send_json({"event": "auth", "args": [token(agent, s.id)]})
        assert await next_frame(ws, "install output") == ["fetching"]
        while (line := await next_frame(ws, "console output")) != ["booted"]:
            assert line[0].startswith("[skyhook]")  # the agent's own notes around it


async def test_console_socket(agent: RunningAgent) -> None:
    s = spec("echo booted; " + ECHO, stop=pb.StopPolicy(command="stop"))
    await agent.supervisor.create(s, start=True)
    base = f"http://127.0.0.1:{agent.http.port}"
    url = f"{base}/api/servers/{s.id}/ws"
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base}/health") as response:
            assert response.status == 200
        async with http.ws_connect(url, origin=ORIGIN) as ws:
            await ws.send_json({"event": "send command", "args": ["early"]})
            assert await next_frame(ws, "jwt error") == ["not authenticated"]
            await ws.send_json({"event": "auth", "args": [token(agent, "other-server")]})
            assert "another server" in (await next_frame(ws, "jwt error"))[0]
            await ws.send_json({"event": "auth", "args": [token(agent, s.id, "file-upload")]})
            assert "scope" in (await next_frame(ws, "jwt error"))[0]

            await ws.send_json({"event": "auth", "args": [token(agent, s.id)]})
            await next_frame(ws, "auth success")
            assert await next_frame(ws, "status") == ["running"]
            assert await next_frame(ws, "console output") == ["booted"]  # history
            await ws.send_json({"event": "send command", "args": ["hi"]})
            assert await next_frame(ws, "console output") == ["got hi"]
            await ws.send_json({"event": "send stats", "args": []})
            stats = json.loads((await next_frame(ws, "stats"))[0])
            assert stats["state"] == "running"
            assert stats["memory_bytes"] > 0
            await ws.send_json({"event": "set state", "args": ["stop"]})
            assert await next_frame(ws, "status") == ["stopping"]
            assert await next_frame(ws, "status") == ["offline"]


async def test_socket_limits(agent: RunningAgent) -> None:
    s = spec(ECHO)
    await agent.supervisor.create(s)
    url = f"http://127.0.0.1:{agent.http.port}/api/servers/{s.id}/ws"
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(url, origin="https://evil.example.test")
        assert refused.value.status == 403
        with pytest.raises(aiohttp.WSServerHandshakeError) as missing:
            await http.ws_connect(url.replace(s.id, "unknown"), origin=ORIGIN)
        assert missing.value.status == 404
        async with http.ws_connect(url, origin=ORIGIN), http.ws_connect(url, origin=ORIGIN):
            with pytest.raises(aiohttp.WSServerHandshakeError) as capped:
                await http.ws_connect(url, origin=ORIGIN)  # unauthenticated, same address
            assert capped.value.status == 429
        async with http.ws_connect(url, origin=ORIGIN) as ws:
            await ws.send_json({"event": "auth", "args": [token(agent, s.id, permissions=[])]})
            await next_frame(ws, "auth success")
            await ws.send_json({"event": "send command", "args": ["x"]})
            assert "permission" in (await next_frame(ws, "daemon error"))[0]
            for _ in range(12):
                await ws.send_json({"event": "send logs", "args": []})
            assert "too many" in (await next_frame(ws, "daemon error"))[0]
            await ws.send_str("x" * 10_000)  # over the message size cap: the socket closes
            async with asyncio.timeout(10):
                while (await ws.receive()).type is aiohttp.WSMsgType.TEXT:
                    pass
            assert ws.closed


async def test_token_expiry_warning(agent: RunningAgent) -> None:
    s = spec(ECHO)
    await agent.supervisor.create(s)
    url = f"http://127.0.0.1:{agent.http.port}/api/servers/{s.id}/ws"
    async with aiohttp.ClientSession() as http, http.ws_connect(url, origin=ORIGIN) as ws:
        await ws.send_json({"event": "auth", "args": [token(agent, s.id, ttl_seconds=61)]})
        await next_frame(ws, "auth success")
        assert await next_frame(ws, "status") == ["offline"]
        await next_frame(ws, "token expiring")
        stale = token(agent, s.id, now=agent.started_at - 5)
        await ws.send_json({"event": "auth", "args": [stale]})
        assert "before the agent started" in (await next_frame(ws, "jwt error"))[0]


async def test_authenticated_sockets_are_capped_per_server(agent: RunningAgent) -> None:
    s = spec(ECHO)
    await agent.supervisor.create(s)
    url = f"http://127.0.0.1:{agent.http.port}/api/servers/{s.id}/ws"
    async with aiohttp.ClientSession() as http:
        late = await http.ws_connect(url, origin=ORIGIN)  # connected while there was room
        viewers = []
        for _ in range(2):  # two authenticated sockets fill the cap of 2
            viewer = await http.ws_connect(url, origin=ORIGIN)
            await viewer.send_json({"event": "auth", "args": [token(agent, s.id)]})
            await next_frame(viewer, "auth success")
            viewers.append(viewer)
        with pytest.raises(aiohttp.WSServerHandshakeError) as full:
            await http.ws_connect(url, origin=ORIGIN)
        assert full.value.status == 429
        await late.send_json({"event": "auth", "args": [token(agent, s.id)]})
        assert "too many" in (await next_frame(late, "daemon error"))[0]
        async with asyncio.timeout(10):
            while (await late.receive()).type is aiohttp.WSMsgType.TEXT:
                pass
        assert late.close_code == aiohttp.WSCloseCode.TRY_AGAIN_LATER
        for viewer in viewers:
            await viewer.close()


@pytest.fixture
async def default_agent(tmp_path: Path) -> Any:
    """An agent with the default console limits."""
    config = make_config(tmp_path / "skyhook", f"node-{uuid.uuid4().hex[:8]}")
    async with agent_in_background(config) as running:
        yield running


async def test_unauthenticated_sockets_cannot_lock_the_owner_out(
    default_agent: RunningAgent,
) -> None:
    """30 sockets that never authenticate, from one address and from many: the owner,
    from another address, still gets in (default limits)."""
    agent = default_agent
    s = spec(ECHO)
    await agent.supervisor.create(s)
    url = f"http://127.0.0.1:{agent.http.port}/api/servers/{s.id}/ws"
    limit = Console().ws_max_unauthenticated_per_address
    attacker = aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))
    botnet = [aiohttp.TCPConnector(local_addr=(f"127.0.1.{n}", 0)) for n in range(1, 31)]
    async with contextlib.AsyncExitStack() as stack:
        sessions = [
            await stack.enter_async_context(aiohttp.ClientSession(connector=c))
            for c in [attacker, *botnet]
        ]
        answers = await asyncio.gather(
            *(_try_socket(sessions[0], url) for _ in range(30)),
            *(_try_socket(bot, url) for bot in sessions[1:]),
        )
        opened = [a for a in answers if not isinstance(a, int)]
        assert sorted(a for a in answers[:30] if isinstance(a, int)) == [429] * (30 - limit)
        assert all(not isinstance(a, int) for a in answers[30:])  # one from each of 30
        async with aiohttp.ClientSession() as owner, owner.ws_connect(url) as ws:
            await ws.send_json({"event": "auth", "args": [token(agent, s.id)]})
            await next_frame(ws, "auth success")
        for socket in opened:
            await socket.close()


async def _try_socket(
    http: aiohttp.ClientSession, url: str
) -> aiohttp.ClientWebSocketResponse | int:
    """The socket, or the HTTP status that refused it."""
    try:
        return await http.ws_connect(url)
    except aiohttp.WSServerHandshakeError as exc:
        return exc.status


async def test_hostile_frames_are_refused_and_the_socket_stays(agent: RunningAgent) -> None:
    s = spec(ECHO)
    await agent.supervisor.create(s)
    url = f"http://127.0.0.1:{agent.http.port}/api/servers/{s.id}/ws"
    async with aiohttp.ClientSession() as http, http.ws_connect(url, origin=ORIGIN) as ws:
        for hostile in ("[" * 4000, '{"event": NaN}', "[1, 2]"):
            await ws.send_str(hostile)
            assert await next_frame(ws, "daemon error") == ["malformed frame"]
        await ws.send_json({"event": "auth", "args": [token(agent, s.id)]})
        await next_frame(ws, "auth success")
