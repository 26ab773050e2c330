"""The deployment logs WebSocket authenticated the browser way: no header, a first
`authenticate` message. Refusals (bad token, another account's or a missing
deployment) are an error frame and a close code, never a hint that it exists."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from aiohttp import WSMsgType
from aiohttp.test_utils import TestClient

from tests.conftest import TEST_IMAGE
from tests.controlplane.accounts_support import Account, register
from tests.controlplane.cluster_support import enrolled_agent, eventually
from tests.controlplane.conftest import SQLITE_ONLY

Client = TestClient[Any, Any]
pytestmark = SQLITE_ONLY
LOOP = "trap 'exit 0' TERM; i=0; while true; do echo line $i; i=$((i+1)); sleep 0.2; done"


async def _create(fast_api: Client, user: Account, **fields: Any) -> str:
    body = {"app_name": "web", "image": TEST_IMAGE, "command": LOOP, "replicas": 1}
    body.update(fields)
    response = await fast_api.post("/v1/deployments", json=body, headers=user.headers)
    created = await response.json()
    assert response.status == 201, created
    deployment_id: str = created["id"]
    return deployment_id


async def _ready(fast_api: Client, user: Account, dep: str) -> bool:
    response = await fast_api.get(f"/v1/deployments/{dep}/status", headers=user.headers)
    status = await response.json()
    return bool(status["replicas"]["ready"] == 1)


async def _refused(fast_api: Client, path: str, token: str) -> tuple[dict[str, Any], int | None]:
    """The error frame and close code after a first-message authentication."""
    socket = await fast_api.ws_connect(path)
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
    fast_api: Client, tmp_path: Path
) -> None:
    admin = await register(fast_api)
    async with enrolled_agent(fast_api, admin, tmp_path / "agent", "node-a"):
        dep = await _create(fast_api, admin)
        await eventually(lambda: _ready(fast_api, admin, dep), timeout=30)
        socket = await fast_api.ws_connect(f"/v1/deployments/{dep}/logs/stream?tail=5")
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
        deleted = await fast_api.delete(f"/v1/deployments/{dep}", headers=admin.headers)
        assert deleted.status == 200


async def test_bad_token_is_refused_with_4401(fast_api: Client) -> None:
    owner = await register(fast_api)
    dep = await _create(fast_api, owner)
    frame, code = await _refused(fast_api, f"/v1/deployments/{dep}/logs/stream", "not-a-token")
    assert frame["type"] == "error"
    assert frame["error"]["code"] == "unauthorized"
    assert code == 4401

    # A header with a bad credential is refused before the upgrade, as for REST.
    response = await fast_api.get(
        f"/v1/deployments/{dep}/logs/stream", headers={"Authorization": "Bearer nope"}
    )
    assert response.status == 401


async def test_other_accounts_and_missing_deployments_look_the_same(fast_api: Client) -> None:
    owner = await register(fast_api)
    other = await register(fast_api)
    dep = await _create(fast_api, owner)
    theirs, theirs_code = await _refused(
        fast_api, f"/v1/deployments/{dep}/logs/stream", other.access_token
    )
    missing, missing_code = await _refused(
        fast_api, f"/v1/deployments/{uuid.uuid4()}/logs/stream", other.access_token
    )
    assert theirs == missing
    assert theirs == {
        "type": "error",
        "error": {"code": "deployment_not_found", "message": "no such deployment"},
    }
    assert theirs_code == missing_code == 4404

    # Seed 002's `command` spelling works too, and the owner is let in.
    socket = await fast_api.ws_connect(f"/v1/deployments/{dep}/logs/stream")
    try:
        await socket.send_json({"command": "authenticate", "token": owner.access_token})
        assert (await socket.receive_json(timeout=10))["type"] == "authenticated"
    finally:
        await socket.close()
