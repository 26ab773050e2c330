"""The one gate of the console and exec sockets: each takes only tokens of its own
scope, for this node and the server asked for, issued since the agent started, with
the permission it needs; and both refuse the same upgrades (Origin, unknown server)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from agent.daemon import RunningAgent
from agent.ws.gate import SocketGate
from common.tokens import Scope, TokenError, sign_server_token
from tests.agent.conftest import SECRET, agent_in_background, make_config
from tests.agent.test_ws_exec import exec_token, exec_url, started_server

ORIGIN = "https://panel.example.test"


def gates(agent: RunningAgent) -> dict[str, SocketGate]:
    return {"console": agent.http.sockets.gate, "exec": agent.http.exec_sockets.gate}


def token(agent: RunningAgent, scope: Scope, **claims: object) -> str:
    values: dict[str, object] = {
        "node_id": agent.identity.node_id, "user_id": "u", "server_id": "srv-1",
        "permissions": ["exec", "control.console"],
    }  # fmt: skip
    values.update(claims)
    return sign_server_token(SECRET, scope=scope, **values)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["console", "exec"])
async def test_each_gate_takes_only_its_own_tokens(agent: RunningAgent, name: Scope) -> None:
    gate = gates(agent)[name]
    other: Scope = "exec" if name == "console" else "console"
    assert gate.verify(token(agent, name), "srv-1").scope == name
    refused = {
        "scope": token(agent, other),
        "another server": token(agent, name, server_id="srv-2"),
        "Audience": token(agent, name, node_id="another-node"),
        "before the agent started": token(agent, name, now=agent.started_at - 60),
    }
    for expected, raw in refused.items():
        with pytest.raises(TokenError, match=expected):
            gate.verify(raw, "srv-1")


async def test_the_exec_gate_needs_the_exec_permission(agent: RunningAgent) -> None:
    without = token(agent, "exec", permissions=["control.console"])
    with pytest.raises(TokenError, match="lacks permission 'exec'"):
        agent.http.exec_sockets.gate.verify(without, "srv-1")
    assert agent.http.sockets.gate.verify(token(agent, "console", permissions=[]), "srv-1")


@pytest.fixture
async def guarded_agent(tmp_path: Path) -> AsyncIterator[RunningAgent]:
    config = make_config(
        tmp_path / "skyhook",
        f"node-{uuid.uuid4().hex[:8]}",
        console={"ws_allowed_origins": [ORIGIN], "ws_max_sockets_per_server": 1},
    )
    async with agent_in_background(config) as running:
        yield running


@pytest.mark.parametrize("path", ["ws", "exec"])
async def test_both_sockets_refuse_other_origins_and_unknown_servers(
    guarded_agent: RunningAgent, path: str
) -> None:
    server = await started_server(guarded_agent)
    base = f"http://127.0.0.1:{guarded_agent.http.port}/api/servers"
    async with aiohttp.ClientSession() as http:
        for name, origin, status in (
            ("unknown", ORIGIN, 404),
            (server, "https://evil.example.test", 403),
        ):
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await http.ws_connect(f"{base}/{name}/{path}", origin=origin)
            assert refused.value.status == status


async def test_an_exec_socket_past_the_servers_cap_is_refused_once_authenticated(
    guarded_agent: RunningAgent,
) -> None:
    agent = guarded_agent
    server = await started_server(agent)
    url = exec_url(agent, server)
    async with aiohttp.ClientSession() as http, http.ws_connect(url, origin=ORIGIN) as first:
        await first.send_json({"auth_token": exec_token(agent, server, ["sleep", "30"])})
        # The first socket holds the server's one place once its token was taken...
        async with asyncio.timeout(10):
            while not agent.http.exec_sockets.gate.admission.server_full(server):
                await asyncio.sleep(0.01)
        with pytest.raises(aiohttp.WSServerHandshakeError) as capped:
            await http.ws_connect(url, origin=ORIGIN)
        assert capped.value.status == 429
