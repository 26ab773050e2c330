"""Caps of the notifications WebSocket (issue 9, finding 5): open sockets per account,
messages a second per socket, and frames built to crash the parser. Real WebSocket
clients against a running control plane."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import WSMsgType
from aiohttp.test_utils import TestClient

from controlplane.api.websocket_auth import CLOSE_UNAUTHORIZED
from controlplane.events.notifications import CLOSE_TOO_MANY, subscriber_name
from controlplane.state import EVENT_BUS
from tests.controlplane.accounts_support import Account, register
from tests.controlplane.conftest import ConfigFactory, start_client

Client = TestClient[Any, Any]
# The socket does not touch the database beyond authentication: one engine is enough.
pytestmark = [
    pytest.mark.parametrize("database_url", ["sqlite"], indirect=True),
    pytest.mark.usefixtures("blocking_guard"),
]
URL = "/v1/ws/notifications"


@pytest.fixture
async def capped(make_config: ConfigFactory) -> AsyncIterator[Client]:
    client = await start_client(
        make_config(notification_sockets_per_account=3, notification_messages_per_second=5)
    )
    try:
        yield client
    finally:
        await client.close()


async def refused_with(socket: Any) -> tuple[str, int | None]:
    """The error code of the last error frame, and the close code."""
    code = ""
    while True:
        message = await socket.receive(timeout=5)
        if message.type is not WSMsgType.TEXT:
            break
        data = message.json()
        if data.get("type") == "error":
            code = data["error"]["code"]
    return code, socket.close_code


async def connect(api: Client, account: Account) -> Any:
    socket = await api.ws_connect(URL, headers=account.headers)
    assert (await socket.receive_json(timeout=5))["type"] == "authenticated"
    return socket


async def test_sockets_are_capped_per_account(capped: Client) -> None:
    alice, bob = await register(capped), await register(capped)
    held = [await connect(capped, alice) for _ in range(3)]
    extra = await connect(capped, alice)
    assert await refused_with(extra) == ("too_many_sockets", CLOSE_TOO_MANY)
    bobs = await connect(capped, bob)  # another account's cap is its own
    await bobs.send_json({"type": "ping"})
    assert (await bobs.receive_json(timeout=5))["type"] == "pong"
    await held.pop().close()
    bus = capped.app[EVENT_BUS]
    async with asyncio.timeout(5):  # the server notices the close on its own time
        while bus.subscribers_named(subscriber_name(alice.id)) >= 3:
            await asyncio.sleep(0.01)
    again = await connect(capped, alice)  # a closed socket frees its place
    await again.send_json({"type": "ping"})
    assert (await again.receive_json(timeout=5))["type"] == "pong"
    for socket in [*held, bobs, again]:
        await socket.close()


async def test_messages_are_capped_per_socket(capped: Client) -> None:
    alice = await register(capped)
    socket = await connect(capped, alice)
    for _ in range(20):
        await socket.send_json({"type": "ping"})
    assert await refused_with(socket) == ("rate_limited", CLOSE_TOO_MANY)


async def test_hostile_frames_are_errors_not_crashes(api: Client) -> None:
    alice = await register(api)
    socket = await connect(api, alice)
    for hostile in ("[" * 16_000, '{"type": NaN}', "[" * 40 + "]" * 40):
        await socket.send_str(hostile)
        reply = await socket.receive_json(timeout=5)
        assert reply["error"]["code"] == "invalid_json"
    await socket.send_json({"type": "ping"})
    assert (await socket.receive_json(timeout=5))["type"] == "pong"
    await socket.close()
    unauthenticated = await api.ws_connect(URL)
    await unauthenticated.send_str("[" * 16_000)
    assert await refused_with(unauthenticated) == ("unauthorized", CLOSE_UNAUTHORIZED)
