"""Console WebSocket tokens that really expire: warning, expiry, refusal, re-auth."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from agent.daemon import RunningAgent
from common.tokens import sign_server_token
from tests.agent.conftest import ECHO, SECRET, agent_in_background, make_config, spec

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("no_blocking_calls")]
TTL_SECONDS = 2
WARNING_SECONDS = 1.0


def console_token(agent: RunningAgent, server: str, ttl_seconds: int) -> str:
    return sign_server_token(
        SECRET,
        node_id=agent.identity.node_id,
        user_id="user-1",
        server_id=server,
        permissions=["*"],
        scope="console",
        ttl_seconds=ttl_seconds,
    )


async def frames_until(ws: aiohttp.ClientWebSocketResponse, event: str) -> list[str]:
    """The events received up to and including the first `event`."""
    seen: list[str] = []
    async with asyncio.timeout(10):
        while not seen or seen[-1] != event:
            seen.append(json.loads(await ws.receive_str())["event"])
    return seen


async def next_args(ws: aiohttp.ClientWebSocketResponse, event: str) -> list[Any]:
    async with asyncio.timeout(10):
        while True:
            message = json.loads(await ws.receive_str())
            if message["event"] == event:
                return list(message["args"])


async def quiet_frames(ws: aiohttp.ClientWebSocketResponse, seconds: float) -> list[str]:
    """The events received within `seconds` (the socket must stay open)."""
    seen: list[str] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while (left := deadline - loop.time()) > 0:
        try:
            message = await ws.receive(timeout=left)
        except TimeoutError:
            break
        assert message.type is aiohttp.WSMsgType.TEXT, message
        seen.append(json.loads(message.data)["event"])
    return seen


@pytest.fixture
async def agent(tmp_path: Path) -> AsyncIterator[RunningAgent]:
    config = make_config(tmp_path / "skyhook", f"node-{uuid.uuid4().hex[:8]}")
    async with agent_in_background(config) as running:
        running.http.sockets.expiry_warning_seconds = WARNING_SECONDS
        yield running


async def test_expired_token_stops_output_until_a_fresh_auth(agent: RunningAgent) -> None:
    # A chatty server: without a valid token none of its output may reach the socket.
    s = spec("echo booted; while true; do echo tick; sleep 0.2; done")
    await agent.supervisor.create(s, start=True)
    url = f"http://127.0.0.1:{agent.http.port}/api/servers/{s.id}/ws"
    async with aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
        short_lived = console_token(agent, s.id, TTL_SECONDS)
        await ws.send_json({"event": "auth", "args": [short_lived]})
        authenticated = time.time()
        before = await frames_until(ws, "token expiring")
        assert "console output" in before
        assert "token expired" not in before
        after_warning = await frames_until(ws, "token expired")
        assert "token expiring" not in after_warning
        assert time.time() - authenticated <= TTL_SECONDS + 1

        # Expired: the socket stays open, nothing flows, every command is refused.
        await ws.send_json({"event": "send command", "args": ["x"]})
        await ws.send_json({"event": "send stats", "args": []})
        assert await next_args(ws, "jwt error") == ["token expired"]
        assert await quiet_frames(ws, 0.5) == ["jwt error"]
        await ws.send_json({"event": "auth", "args": [short_lived]})
        assert await frames_until(ws, "token expired") == ["token expired"]
        assert not ws.closed

        await ws.send_json({"event": "auth", "args": [console_token(agent, s.id, 60)]})
        assert await frames_until(ws, "auth success") == ["auth success"]
        assert await next_args(ws, "status") == ["running"]
        assert await next_args(ws, "console output") == ["tick"]  # live again, no history
        await ws.send_json({"event": "send stats", "args": []})
        assert json.loads((await next_args(ws, "stats"))[0])["state"] == "running"


async def test_reauth_before_expiry_keeps_the_socket_going(agent: RunningAgent) -> None:
    s = spec(ECHO)
    await agent.supervisor.create(s, start=True)
    url = f"http://127.0.0.1:{agent.http.port}/api/servers/{s.id}/ws"
    async with aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
        await ws.send_json({"event": "send command", "args": ["early"]})
        assert await next_args(ws, "jwt error") == ["not authenticated"]
        await ws.send_json({"event": "auth", "args": [console_token(agent, s.id, TTL_SECONDS)]})
        await frames_until(ws, "token expiring")
        # Re-auth as a client does on `token expiring`: the old token's expiry passes
        # silently and the socket keeps working with the new one.
        await ws.send_json({"event": "auth", "args": [console_token(agent, s.id, 60)]})
        await frames_until(ws, "auth success")
        later = await quiet_frames(ws, WARNING_SECONDS + 0.5)  # past the old exp
        assert "token expired" not in later
        assert "token expiring" not in later
        await ws.send_json({"event": "send command", "args": ["still here"]})
        assert await next_args(ws, "console output") == ["got still here"]


async def closed_with(ws: aiohttp.ClientWebSocketResponse, within: float) -> int | None:
    """Read until the agent closes the socket; its close code."""
    async with asyncio.timeout(within):
        while (await ws.receive()).type is aiohttp.WSMsgType.TEXT:
            pass
    return ws.close_code


async def test_sockets_without_a_valid_token_are_closed_and_free_their_slot(
    tmp_path: Path,
) -> None:
    grace = 1.0
    config = make_config(
        tmp_path / "skyhook",
        f"node-{uuid.uuid4().hex[:8]}",
        console={
            "ws_max_sockets_per_server": 1,
            "ws_max_unauthenticated_per_address": 1,
            "ws_auth_timeout_seconds": grace,
        },
    )
    async with agent_in_background(config) as agent:
        s = spec(ECHO)
        await agent.supervisor.create(s, start=True)
        url = f"http://127.0.0.1:{agent.http.port}/api/servers/{s.id}/ws"
        async with aiohttp.ClientSession() as http:
            async with http.ws_connect(url) as silent:
                with pytest.raises(aiohttp.WSServerHandshakeError) as capped:
                    await http.ws_connect(url)
                assert capped.value.status == 429
                opened = time.monotonic()
                assert await closed_with(silent, grace + 5) == aiohttp.WSCloseCode.POLICY_VIOLATION
                assert time.monotonic() - opened >= grace - 0.1

            async with http.ws_connect(url) as viewer:  # the slot is free again
                await viewer.send_json({"event": "auth", "args": [console_token(agent, s.id, 2)]})
                await frames_until(viewer, "token expired")
                expired = time.monotonic()
                assert await closed_with(viewer, grace + 5) == aiohttp.WSCloseCode.POLICY_VIOLATION
                assert time.monotonic() - expired >= grace - 0.3

            async with http.ws_connect(url) as renewing:
                await renewing.send_json(
                    {"event": "auth", "args": [console_token(agent, s.id, 60)]}
                )
                await frames_until(renewing, "auth success")
                assert "token expired" not in await quiet_frames(renewing, grace + 0.5)
                assert not renewing.closed
