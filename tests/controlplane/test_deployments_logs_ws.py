"""The deployment logs WebSocket authenticated the browser way: no header, a first
`authenticate` message. Refusals (bad token, another account's or a missing
deployment) are an error frame and a close code, never a hint that it exists."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import WSMsgType
from aiohttp.test_utils import TestClient

from tests.conftest import TEST_IMAGE
from tests.controlplane.accounts_support import Account, register
from tests.controlplane.cluster_support import FAST, enrolled_agent, eventually
from tests.controlplane.conftest import SQLITE_ONLY, ConfigFactory, start_client

Client = TestClient[Any, Any]
pytestmark = SQLITE_ONLY
LOOP = "trap 'exit 0' TERM; i=0; while true; do echo line $i; i=$((i+1)); sleep 0.2; done"


@pytest.fixture
async def client(make_config: ConfigFactory) -> AsyncIterator[Client]:
    started = await start_client(make_config(**FAST))
    try:
        yield started
    finally:
        await started.close()


async def _create(client: Client, user: Account, **fields: Any) -> str:
    body = {"app_name": "web", "image": TEST_IMAGE, "command": LOOP, "replicas": 1}
    body.update(fields)
    response = await client.post("/v1/deployments", json=body, headers=user.headers)
    created = await response.json()
    assert response.status == 201, created
    deployment_id: str = created["id"]
    return deployment_id


async def _ready(client: Client, user: Account, dep: str) -> bool:
    response = await client.get(f"/v1/deployments/{dep}/status", headers=user.headers)
    status = await response.json()
    return bool(status["replicas"]["ready"] == 1)


async def _refused(client: Client, path: str, token: str) -> tuple[dict[str, Any], int | None]:
    """The error frame and close code after a first-message authentication."""
    socket = await client.ws_connect(path)
    try:
        await socket.send_json({"type": "authenticate", "token": token})
        frame: dict[str, Any] = await socket.receive_json(timeout=10)
        if frame.get("type") == "authenticated":
            frame = await socket.receive_json(timeout=10)
        closing = await socket.receive(timeout=10)
        assert closing.type in (WSMsgType.CLOSE, WSMsgType.CLOSED), closing
        return frame, socket.close_code
    finally:
        await socket.close()


@pytest.mark.docker
async def test_first_message_authentication_streams_log_lines(
    client: Client, tmp_path: Path
) -> None:
    admin = await register(client)
    async with enrolled_agent(client, admin, tmp_path / "agent", "node-a"):
        dep = await _create(client, admin)
        await eventually(lambda: _ready(client, admin, dep), timeout=30)
        socket = await client.ws_connect(f"/v1/deployments/{dep}/logs/stream?tail=5")
        try:
            await socket.send_json({"type": "authenticate", "token": admin.access_token})
            ack = await socket.receive_json(timeout=10)
            assert ack == {"type": "authenticated", "user_id": admin.id}
            frame = await socket.receive_json(timeout=10)
            assert frame["message"].startswith("line"), frame
            assert frame["source"] == "stdout"
            # Past the tail of 5, lines keep coming as the container writes them.
            for _ in range(6):
                following = await socket.receive_json(timeout=10)
                assert following["message"].startswith("line")
        finally:
            await socket.close()
        deleted = await client.delete(f"/v1/deployments/{dep}", headers=admin.headers)
        assert deleted.status == 200


async def test_bad_token_is_refused_with_4401(client: Client) -> None:
    owner = await register(client)
    dep = await _create(client, owner)
    frame, code = await _refused(client, f"/v1/deployments/{dep}/logs/stream", "not-a-token")
    assert frame["type"] == "error"
    assert frame["error"]["code"] == "unauthorized"
    assert code == 4401

    # A header with a bad credential is refused before the upgrade, as for REST.
    response = await client.get(
        f"/v1/deployments/{dep}/logs/stream", headers={"Authorization": "Bearer nope"}
    )
    assert response.status == 401


async def test_other_accounts_and_missing_deployments_look_the_same(client: Client) -> None:
    owner = await register(client)
    other = await register(client)
    dep = await _create(client, owner)
    theirs, theirs_code = await _refused(
        client, f"/v1/deployments/{dep}/logs/stream", other.access_token
    )
    missing, missing_code = await _refused(
        client, f"/v1/deployments/{uuid.uuid4()}/logs/stream", other.access_token
    )
    assert theirs == missing
    assert theirs == {
        "type": "error",
        "error": {"code": "deployment_not_found", "message": "no such deployment"},
    }
    assert theirs_code == missing_code == 4404

    # Seed 002's `command` spelling works too, and the owner is let in.
    socket = await client.ws_connect(f"/v1/deployments/{dep}/logs/stream")
    try:
        await socket.send_json({"command": "authenticate", "token": owner.access_token})
        assert (await socket.receive_json(timeout=10))["type"] == "authenticated"
    finally:
        await socket.close()
