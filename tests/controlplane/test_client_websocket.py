"""The client's standard-library WebSocket: framing rules on a socket pair, and a
whole exec session against the real agent WebSocket server and a real container."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import socket
import struct
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.daemon import RunningAgent
from common.tokens import sign_server_token
from controlplane.client.websocket import (
    BINARY,
    CLOSE,
    CONTINUATION,
    PING,
    PONG,
    TEXT,
    Message,
    WebSocket,
    WebSocketError,
    connect,
    encode_frame,
)
from tests.agent.conftest import SECRET, agent_in_background, make_config, spec


@pytest.fixture
def pair() -> Iterator[tuple[WebSocket, socket.socket]]:
    client, server = socket.socketpair()
    with server:
        yield WebSocket(client), server
    client.close()


def read_client_frame(server: socket.socket) -> tuple[int, bytes]:
    """One frame the client sent: its opcode and unmasked payload (it must be masked)."""
    first, second = server.recv(2)
    assert second & 0x80, "client frames are masked"
    size = second & 0x7F
    if size == 126:
        (size,) = struct.unpack(">H", server.recv(2))
    elif size == 127:
        (size,) = struct.unpack(">Q", server.recv(8))
    key = server.recv(4)
    masked = b""
    while len(masked) < size:
        masked += server.recv(size - len(masked))
    return first & 0x0F, bytes(b ^ key[i % 4] for i, b in enumerate(masked))


def test_fragments_are_joined_and_pings_answered_in_between(
    pair: tuple[WebSocket, socket.socket],
) -> None:
    ws, server = pair
    server.sendall(
        encode_frame(TEXT, b"hel", fin=False, mask=False)
        + encode_frame(PING, b"are you there", mask=False)
        + encode_frame(CONTINUATION, b"lo ", fin=False, mask=False)
        + encode_frame(CONTINUATION, "wörld".encode(), mask=False)
        + encode_frame(BINARY, bytes(70_000), mask=False)
    )
    message = ws.receive()
    assert message is not None
    assert (message.opcode, message.text) == (TEXT, "hello wörld")
    assert read_client_frame(server) == (PONG, b"are you there")
    big = ws.receive()
    assert big is not None
    assert (big.opcode, len(big.data)) == (BINARY, 70_000)


def test_whole_frames_read_at_once_or_in_pieces_give_the_same_messages(
    pair: tuple[WebSocket, socket.socket],
) -> None:
    ws, server = pair
    frames = [
        encode_frame(TEXT, b'{"event": "console output", "args": ["L 1"]}', mask=False),
        encode_frame(TEXT, b"", mask=False),
        encode_frame(BINARY, bytes(125), mask=False),
        encode_frame(TEXT, b"x" * 126, mask=False),
    ]
    expected = [(TEXT, frames[0][2:]), (TEXT, b""), (BINARY, bytes(125)), (TEXT, b"x" * 126)]
    for frame in frames:  # one frame per read: the reader's shortcut
        server.sendall(frame)
        message = ws.receive()
        assert message is not None
        assert (message.opcode, message.data) == expected[frames.index(frame)]
    server.sendall(b"".join(frames))  # several frames in one read: the buffer
    assert [(m.opcode, m.data) for m in (ws.receive() for _ in frames) if m] == expected
    joined = b"".join(frames)

    def in_two(at: int) -> None:
        server.sendall(joined[:at])
        time.sleep(0.002)  # the reader takes the first part alone
        server.sendall(joined[at:])

    for at in range(1, len(joined), 37):  # split anywhere
        sender = threading.Thread(target=in_two, args=(at,))
        sender.start()
        assert [(m.opcode, m.data) for m in (ws.receive() for _ in frames) if m] == expected
        sender.join()
    assert not ws.has_buffered()


@pytest.mark.parametrize(
    "text",
    ['{"event": "auth success", "args": []}', ' {"a": 1} ', "[1, 2.5, null]\n", '"x"', "7"],
)
def test_a_message_parses_as_json_loads_does(text: str) -> None:
    assert Message(TEXT, text.encode()).json() == json.loads(text)


@pytest.mark.parametrize("text", ["", "{", '{"a": 1} x', "{} {}", "nope"])
def test_a_message_that_is_not_one_json_value_is_refused_as_json_loads_does(text: str) -> None:
    with pytest.raises(json.JSONDecodeError) as ours:
        Message(TEXT, text.encode()).json()
    with pytest.raises(json.JSONDecodeError) as theirs:
        json.loads(text)
    assert str(ours.value) == str(theirs.value)


def test_sent_frames_are_masked_at_every_length(pair: tuple[WebSocket, socket.socket]) -> None:
    ws, server = pair
    for size in (0, 125, 126, 65_535, 65_536):
        payload = bytes(i % 251 for i in range(size))
        ws.send_binary(payload)
        assert read_client_frame(server) == (BINARY, payload)


def test_a_close_is_answered_and_ends_receiving(pair: tuple[WebSocket, socket.socket]) -> None:
    ws, server = pair
    server.sendall(encode_frame(CLOSE, struct.pack(">H", 1008) + b"bye", mask=False))
    assert ws.receive() is None
    assert ws.close_code == 1008
    assert read_client_frame(server) == (CLOSE, struct.pack(">H", 1008))


@pytest.mark.parametrize(
    ("frames", "problem"),
    [
        (encode_frame(TEXT, b"x", mask=True), "must not mask"),
        (encode_frame(CONTINUATION, b"x", mask=False), "out of order"),
        (encode_frame(PING, b"x", fin=False, mask=False), "never fragmented"),
        (bytes([0x81, 0x7F]) + struct.pack(">Q", 1 << 40), "over the limit"),
        (b"\x81", "closed without a close frame"),
    ],
    ids=lambda value: value if isinstance(value, str) else "frames",  # masks are random
)
def test_protocol_violations_are_errors(
    pair: tuple[WebSocket, socket.socket], frames: bytes, problem: str
) -> None:
    ws, server = pair
    server.sendall(frames)
    server.shutdown(socket.SHUT_WR)
    with pytest.raises(WebSocketError, match=problem):
        ws.receive()


@pytest.fixture
async def agent(tmp_path: Path) -> AsyncIterator[RunningAgent]:
    config = make_config(tmp_path / "skyhook", f"node-{uuid.uuid4().hex[:8]}")
    async with agent_in_background(config) as running:
        yield running


def shell_session(port: int, server: str, token: str) -> dict[str, Any]:
    """A whole session with the standard-library client (blocking: run in a thread)."""
    ws = connect(f"ws://127.0.0.1:{port}/api/servers/{server}/exec")
    screen = b""
    ws.send_json({"auth_token": token, "tty_size": {"height": 25, "width": 90}})

    def until(text: bytes) -> bytes:
        """What the command wrote up to `text` (consumed with it)."""
        nonlocal screen
        while text not in screen:
            message = ws.receive()
            assert message is not None, screen
            screen += base64.b64decode(message.json().get("stdout", {}).get("data", ""))
        before, _, screen = screen.partition(text)
        return before

    def typed(text: str) -> None:
        ws.send_json({"stdin": {"data": base64.b64encode(text.encode()).decode()}})

    def size_line() -> bytes:
        # The shell's line editor may redraw the typed line (or end it twice) when
        # input or a resize lands while it reads (under load): the size is the first
        # line that is one.
        line = until(b"\r\n")
        while not re.fullmatch(rb"\d+ \d+", line):
            line = until(b"\r\n")
        return line

    typed("stty size\n")
    until(b"stty size\r\n")
    first_size = size_line()
    ws.send_json({"tty_size": {"height": 50, "width": 160}})
    typed("stty size; exit 9\n")
    until(b"exit 9\r\n")
    second_size = size_line()
    while (message := ws.receive()) is not None:
        if (frame := message.json()).get("exited"):
            ws.close()
            return {"sizes": [first_size, second_size], "exit": frame["result"]}
    raise AssertionError(screen)


@pytest.mark.docker
async def test_an_exec_session_with_the_stdlib_client(agent: RunningAgent) -> None:
    s = spec("sleep 3600")
    await agent.supervisor.create(s, start=True)
    token = sign_server_token(
        SECRET, node_id=agent.identity.node_id, user_id="u", server_id=s.id,
        permissions=["exec"], scope="exec", details={"command": ["/bin/sh"]},
    )  # fmt: skip
    result = await asyncio.to_thread(shell_session, agent.http.port, s.id, token)
    assert result["sizes"] == [b"25 90", b"50 160"]
    assert result["exit"] == {"exit_code": 9}
    with pytest.raises(WebSocketError) as refused:
        await asyncio.to_thread(connect, f"ws://127.0.0.1:{agent.http.port}/api/servers/x/exec")
    assert refused.value.status == 404
