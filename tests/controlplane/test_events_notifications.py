"""The notifications WebSocket on a running control plane: authentication, ping,
subscriptions, and that an account only ever sees its own resources' events."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp import WSMsgType
from aiohttp.test_utils import TestClient

from controlplane.api import websocket_auth
from controlplane.events.bus import Event, EventType
from controlplane.state import EVENT_BUS
from tests.controlplane.accounts_support import Account, register

# The socket does not touch the database beyond authentication: one engine is enough.
pytestmark = [
    pytest.mark.parametrize("database_url", ["sqlite"], indirect=True),
    pytest.mark.usefixtures("blocking_guard"),
]


async def connect(api: TestClient[Any, Any], account: Account) -> Any:
    socket = await api.ws_connect("/v1/ws/notifications", headers=account.headers)
    hello = await socket.receive_json(timeout=5)
    assert hello["type"] == "authenticated"
    return socket


async def next_event(socket: Any, timeout: float = 2) -> dict[str, Any]:
    message: dict[str, Any] = await socket.receive_json(timeout=timeout)
    return message


async def assert_silent(socket: Any) -> None:
    try:
        message = await socket.receive(timeout=0.3)
    except TimeoutError:
        return
    raise AssertionError(f"unexpected message {message}")


def publish(api: TestClient[Any, Any], event: Event) -> None:
    api.app[EVENT_BUS].publish(event)


async def test_owner_sees_only_own_events(api: TestClient[Any, Any]) -> None:
    admin = await register(api)  # the first account is an admin
    alice = await register(api)
    bob = await register(api)
    alice_ws = await connect(api, alice)
    bob_ws = await connect(api, bob)
    admin_ws = await connect(api, admin)

    publish(api, Event(EventType.DEPLOYMENT_STATUS_CHANGED, owner_id=alice.id,
                       deployment_id="d-a", data={"status": "running"}))  # fmt: skip
    publish(api, Event(EventType.TASK_SUCCEEDED, owner_id=bob.id, task_id="t-b"))

    event = await next_event(alice_ws)
    assert event["type"] == "deployment_status_changed"
    assert event["deployment_id"] == "d-a"
    assert event["data"] == {"status": "running"}
    assert event["timestamp"].endswith("Z")
    await assert_silent(alice_ws)

    event = await next_event(bob_ws)
    assert event["task_id"] == "t-b"
    await assert_silent(bob_ws)
    # Admins do not see other accounts' deployments and tasks either.
    await assert_silent(admin_ws)
    for socket in (alice_ws, bob_ws, admin_ws):
        await socket.close()


async def test_node_events_reach_subscribed_admins_only(api: TestClient[Any, Any]) -> None:
    admin = await register(api)
    user = await register(api)
    admin_ws = await connect(api, admin)
    user_ws = await connect(api, user)

    await user_ws.send_json({"type": "subscribe", "topics": ["nodes"]})
    refused = await next_event(user_ws)
    assert refused["type"] == "error"
    assert refused["error"]["code"] == "invalid_topic"

    publish(api, Event(EventType.NODE_DOWN, node_id="n1"))
    await assert_silent(admin_ws)  # not subscribed to nodes by default

    await admin_ws.send_json({"type": "subscribe", "topics": ["nodes"]})
    assert (await next_event(admin_ws))["type"] == "subscribed"
    publish(api, Event(EventType.NODE_DOWN, node_id="n1"))
    event = await next_event(admin_ws)
    assert event == {**event, "type": "node_down", "node_id": "n1"}
    await assert_silent(user_ws)
    await admin_ws.close()
    await user_ws.close()


async def test_topics_narrow_and_unsubscribe(api: TestClient[Any, Any]) -> None:
    user = await register(api)
    socket = await connect(api, user)
    await socket.send_json({"type": "unsubscribe", "topics": ["deployments", "tasks"]})
    assert (await next_event(socket))["active"] == []
    await socket.send_json({"command": "subscribe", "topics": ["deployment:d2"]})
    assert (await next_event(socket))["active"] == ["deployment:d2"]

    for deployment in ("d1", "d2"):
        publish(api, Event(EventType.DEPLOYMENT_STATUS_CHANGED, owner_id=user.id,
                           deployment_id=deployment))  # fmt: skip
    publish(api, Event(EventType.TASK_STARTED, owner_id=user.id, task_id="t"))
    assert (await next_event(socket))["deployment_id"] == "d2"
    await assert_silent(socket)
    await socket.close()


async def test_ping_and_authenticate_message(api: TestClient[Any, Any]) -> None:
    user = await register(api)
    socket = await api.ws_connect("/v1/ws/notifications")
    await socket.send_json({"type": "authenticate", "token": user.access_token})
    assert (await next_event(socket))["type"] == "authenticated"
    await socket.send_json({"type": "ping"})
    assert (await next_event(socket))["type"] == "pong"
    await socket.send_str("not json")
    assert (await next_event(socket))["error"]["code"] == "invalid_json"

    response = await api.get("/v1/notifications/test", headers=user.headers)
    assert response.status == 200
    event = await next_event(socket)
    assert event["type"] == "test"
    stats = await (await api.get("/v1/notifications/stats", headers=user.headers)).json()
    assert stats["subscribers"] >= 1  # the first account is an admin: everything
    assert stats["published"] >= 1
    other = await register(api)
    own = await (await api.get("/v1/notifications/stats", headers=other.headers)).json()
    assert own == {"subscribers": 0, "published": None, "webhooks": None}
    other_socket = await connect(api, other)
    own = await (await api.get("/v1/notifications/stats", headers=other.headers)).json()
    assert own["subscribers"] == 1
    await other_socket.close()
    await socket.close()


async def test_bad_or_missing_token_closes(api: TestClient[Any, Any]) -> None:
    socket = await api.ws_connect("/v1/ws/notifications")
    await socket.send_json({"type": "authenticate", "token": "nope"})
    refused = await next_event(socket)
    assert refused["error"]["code"] == "unauthorized"
    closing = await socket.receive(timeout=2)
    assert closing.type in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.CLOSING)
    assert socket.close_code == 4401

    socket = await api.ws_connect("/v1/ws/notifications")
    await socket.send_json({"type": "ping"})
    assert (await next_event(socket))["type"] == "error"
    await socket.close()


async def test_slow_reader_does_not_block_publishers(api: TestClient[Any, Any]) -> None:
    user = await register(api)
    socket = await connect(api, user)
    for n in range(2000):
        publish(api, Event(EventType.TASK_STARTED, owner_id=user.id, task_id=str(n)))
    await asyncio.sleep(0.2)
    first = await next_event(socket)
    assert first["type"] == "task_started"
    await socket.close()


@pytest.mark.parametrize("end", ["revoke the key", "log out"])
async def test_a_socket_ends_soon_after_its_credential(
    api: TestClient[Any, Any], monkeypatch: pytest.MonkeyPatch, end: str
) -> None:
    monkeypatch.setattr(websocket_auth, "REVALIDATE_SECONDS", 0.2)
    user = await register(api)
    listed = await api.post("/v1/api-keys", json={"name": "ws"}, headers=user.headers)
    key = await listed.json()
    credential = key["key"] if end == "revoke the key" else user.access_token
    socket = await api.ws_connect(
        "/v1/ws/notifications", headers={"Authorization": f"Bearer {credential}"}
    )
    assert (await next_event(socket))["type"] == "authenticated"
    await asyncio.sleep(0.5)  # checked again meanwhile: still valid
    await socket.send_json({"type": "ping"})
    assert (await next_event(socket))["type"] == "pong"

    if end == "revoke the key":
        revoked = await api.delete(f"/v1/api-keys/{key['id']}", headers=user.headers)
    else:
        revoked = await api.post("/v1/auth/logout", headers=user.headers)
    assert revoked.status in (200, 204), await revoked.text()
    refused = await next_event(socket, timeout=5)
    assert refused["error"]["code"] == "unauthorized"
    closing = await socket.receive(timeout=5)
    assert closing.type in (WSMsgType.CLOSE, WSMsgType.CLOSED)
    assert socket.close_code == 4401


async def test_seed_002_command_forms_echo_command_and_state(api: TestClient[Any, Any]) -> None:
    """Seed 002's `{"state", "command", "data"}` requests: authenticate with the token
    in `data`, subscribe with topics in `data`; each reply echoes `command` and `state`."""
    user = await register(api)
    socket = await api.ws_connect("/v1/ws/notifications")
    await socket.send_json(
        {"state": "s1", "command": "authenticate", "data": {"token": user.access_token}}
    )
    assert await next_event(socket) == {
        "type": "authenticated", "user_id": user.id, "command": "authenticate", "state": "s1",
    }  # fmt: skip
    await socket.send_json({"state": 7, "command": "ping"})
    pong = await next_event(socket)
    assert (pong["type"], pong["command"], pong["state"]) == ("pong", "ping", 7)
    await socket.send_json({"state": "s3", "command": "subscribe", "data": {"topics": ["nodes"]}})
    subscribed = await next_event(socket)  # the first account is an admin
    assert (subscribed["type"], subscribed["command"], subscribed["state"]) == (
        "subscribed", "subscribe", "s3",
    )  # fmt: skip
    await socket.send_json({"command": "unsubscribe", "data": {"topics": ["tasks"]}})
    unsubscribed = await next_event(socket)
    assert unsubscribed["active"] == ["deployments", "nodes"]
    assert (unsubscribed["command"], unsubscribed["state"]) == ("unsubscribe", None)
    await socket.send_json({"command": "subscribe", "state": "s5", "data": {"topics": ["x"]}})
    error = await next_event(socket)
    assert (error["type"], error["command"], error["state"]) == ("error", "subscribe", "s5")
    await socket.send_json({"type": "ping", "state": "x"})
    assert "command" not in await next_event(socket)  # our own form: no echo
    await socket.close()


async def test_seed_002_authentication_refusal_echoes_too(api: TestClient[Any, Any]) -> None:
    for message in (
        {"state": "r1", "command": "authenticate", "data": {"token": "not-a-token"}},
        {"state": "r1", "command": "authenticate", "data": {}},
    ):
        socket = await api.ws_connect("/v1/ws/notifications")
        await socket.send_json(message)
        refused = await next_event(socket)
        assert refused["error"]["code"] == "unauthorized"
        assert (refused["command"], refused["state"]) == ("authenticate", "r1")
        await socket.close()
