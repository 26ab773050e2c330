"""The exec WebSocket on the agent's HTTP port: a real client, a real agent, a real
container on the real dockerd."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from agent.daemon import RunningAgent
from common.tokens import sign_server_token
from tests.agent.conftest import SECRET, agent_in_background, make_config, spec

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("no_blocking_calls")]


def exec_token(
    agent: RunningAgent,
    server: str,
    command: list[str] | None = None,
    *,
    scope: Any = "exec",
    secret: str = SECRET,
    node_id: str = "",
) -> str:
    return sign_server_token(
        secret,
        node_id=node_id or agent.identity.node_id,
        user_id="user-1",
        server_id=server,
        permissions=["exec"],
        scope=scope,
        details={"command": command or ["/bin/sh"]},
    )


class Terminal:
    """The client side of one exec socket: what the command wrote so far."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.screen = ""
        self.exited: dict[str, Any] | None = None

    async def type(self, text: str) -> None:
        await self.ws.send_json({"stdin": {"data": base64.b64encode(text.encode()).decode()}})

    async def frame(self) -> dict[str, Any]:
        message = await self.ws.receive()
        assert message.type is aiohttp.WSMsgType.TEXT, message
        frame: dict[str, Any] = json.loads(message.data)
        if "stdout" in frame:
            self.screen += base64.b64decode(frame["stdout"]["data"]).decode(errors="replace")
        if frame.get("exited"):
            self.exited = frame
        return frame

    async def expect(self, text: str, timeout: float = 10.0) -> None:
        """Wait until `text` appears after what was expected before."""
        async with asyncio.timeout(timeout):
            while text not in self.screen:
                await self.frame()
        self.screen = self.screen[self.screen.index(text) + len(text) :]

    async def error(self, timeout: float = 10.0) -> dict[str, Any]:
        """The next error frame (output the shell still writes may come first)."""
        async with asyncio.timeout(timeout):
            while "error" not in (frame := await self.frame()):
                pass
        return dict(frame["error"])

    async def wait_exit(self, timeout: float = 10.0) -> int:
        async with asyncio.timeout(timeout):
            while self.exited is None:
                await self.frame()
        return int(self.exited["result"]["exit_code"])


async def started_server(agent: RunningAgent) -> str:
    s = spec("sleep 3600")
    await agent.supervisor.create(s, start=True)
    return s.id


def exec_url(agent: RunningAgent, server: str) -> str:
    return f"http://127.0.0.1:{agent.http.port}/api/servers/{server}/exec"


async def test_an_interactive_shell_types_reads_resizes_and_exits(agent: RunningAgent) -> None:
    server = await started_server(agent)
    async with aiohttp.ClientSession() as http, http.ws_connect(exec_url(agent, server)) as ws:
        await ws.send_json(
            {"auth_token": exec_token(agent, server), "tty_size": {"height": 30, "width": 100}}
        )
        term = Terminal(ws)
        await term.expect("$ ")  # the prompt of an unprivileged shell (uid 988 by default)
        await term.type("stty size; echo $TERM\n")
        await term.expect("30 100\r\nxterm\r\n")
        await ws.send_json({"tty_size": {"height": 41, "width": 132}})
        await term.type("stty size\n")
        await term.expect("41 132\r\n")
        await ws.send_json({"tty_size": {"height": 0, "width": 10}})
        assert (await term.error())["code"] == "bad_frame"
        await term.type("exit 3\n")
        assert await term.wait_exit() == 3
        assert (await ws.receive()).type is aiohttp.WSMsgType.CLOSE
    assert ws.close_code == 1000


async def test_a_command_runs_to_its_exit_code(agent: RunningAgent) -> None:
    server = await started_server(agent)
    command = ["sh", "-c", "read line; echo got $line; exit 7"]
    async with aiohttp.ClientSession() as http, http.ws_connect(exec_url(agent, server)) as ws:
        await ws.send_json({"auth_token": exec_token(agent, server, command)})
        term = Terminal(ws)
        await term.type("hello\n")
        await term.expect("got hello")
        assert await term.wait_exit() == 7


async def refusal(agent: RunningAgent, server: str, first: dict[str, Any]) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http, http.ws_connect(exec_url(agent, server)) as ws:
        await ws.send_json(first)
        frame: dict[str, Any] = json.loads(await ws.receive_str())
        assert (await ws.receive()).type is aiohttp.WSMsgType.CLOSE
        assert ws.close_code == 1008
        return dict(frame["error"])


async def test_tokens_of_another_scope_server_or_node_are_refused(agent: RunningAgent) -> None:
    server = await started_server(agent)
    other = await started_server(agent)
    cases = {
        "scope": exec_token(agent, server, scope="console"),
        "another server": exec_token(agent, other),
        "Audience": exec_token(agent, server, node_id="another-node"),
        "Signature": exec_token(agent, server, secret="another-secret-" * 3),
    }
    for expected, token in cases.items():
        error = await refusal(agent, server, {"auth_token": token})
        assert error["code"] == "invalid_token"
        assert expected in error["message"]
    assert (await refusal(agent, server, {"hello": 1}))["code"] == "bad_frame"


async def test_a_token_is_good_for_one_session(agent: RunningAgent) -> None:
    server = await started_server(agent)
    token = exec_token(agent, server, ["true"])
    async with aiohttp.ClientSession() as http, http.ws_connect(exec_url(agent, server)) as ws:
        await ws.send_json({"auth_token": token})
        assert await Terminal(ws).wait_exit() == 0
    error = await refusal(agent, server, {"auth_token": token})
    assert error == {"code": "token_used", "message": "this exec token was already used"}


async def test_leaving_hangs_up_the_command(agent: RunningAgent) -> None:
    server = await started_server(agent)
    url = exec_url(agent, server)
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(url) as ws:
            await ws.send_json({"auth_token": exec_token(agent, server, ["sleep", "4242"])})
            await asyncio.sleep(0.3)  # the command has started: nothing to await on a TTY
        async with http.ws_connect(url) as ws:
            await ws.send_json({"auth_token": exec_token(agent, server, ["ps"])})
            term = Terminal(ws)
            assert await term.wait_exit() == 0
    assert "sleep 3600" in term.screen
    assert "sleep 4242" not in term.screen


async def test_a_stopped_server_is_refused_and_a_missing_one_is_404(agent: RunningAgent) -> None:
    s = spec("sleep 3600")
    await agent.supervisor.create(s, start=False)
    error = await refusal(agent, s.id, {"auth_token": exec_token(agent, s.id)})
    assert error == {"code": "not_running", "message": "the server is not running"}
    async with aiohttp.ClientSession() as http:
        response = await http.get(exec_url(agent, "no-such-server"))
        assert response.status == 404


async def _keep_typing(term: Terminal) -> None:
    """A newline and the end of input, again and again until the socket closes."""
    while True:
        await term.type("\n")
        await term.ws.send_json({"stdin": {"close": True}})
        await asyncio.sleep(0.01)


async def test_input_after_a_quick_exit_still_gets_the_exit_code(agent: RunningAgent) -> None:
    """Stdin that outlives the command (a script piping input into `exec`) must not
    cut the `exited` frame off: 10 sessions out of 10 end with the remote code."""
    server = await started_server(agent)
    command = ["sh", "-c", "exit 3"]
    for _ in range(10):
        async with (
            aiohttp.ClientSession() as http,
            http.ws_connect(exec_url(agent, server)) as ws,
        ):
            await ws.send_json({"auth_token": exec_token(agent, server, command)})
            term = Terminal(ws)

            typing = asyncio.create_task(_keep_typing(term))
            try:
                assert await term.wait_exit() == 3
            finally:
                typing.cancel()
                with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                    await typing


async def test_a_sessions_slot_is_free_once_its_close_arrives(tmp_path: Path) -> None:
    config = make_config(
        tmp_path / "skyhook",
        f"node-{uuid.uuid4().hex[:8]}",
        console={"ws_max_sockets_per_server": 1},
    )
    async with agent_in_background(config) as agent, aiohttp.ClientSession() as http:
        server = await started_server(agent)
        for _ in range(2):  # the second connects as soon as the first has read its close
            async with http.ws_connect(exec_url(agent, server)) as ws:
                await ws.send_json({"auth_token": exec_token(agent, server, ["true"])})
                assert await Terminal(ws).wait_exit() == 0
                assert (await ws.receive()).type is aiohttp.WSMsgType.CLOSE
            assert ws.close_code == 1000
