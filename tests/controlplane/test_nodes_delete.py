"""DELETE /v1/nodes/{id} removes the node's replica containers through its agent
before forgetting it, the replicas move to another node, and an unreachable agent
does not block the delete (the answer says the containers were not removed)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.conftest import TEST_IMAGE
from tests.controlplane.accounts_support import Account, expect_json, register
from tests.controlplane.cluster_support import (
    create_node,
    enrolled_agent,
    eventually,
)
from tests.controlplane.conftest import SQLITE_ONLY
from tests.docker_support import labelled_containers

Client = TestClient[Any, Any]
pytestmark = SQLITE_ONLY
LOOP = "trap 'exit 0' TERM; while true; do echo up; sleep 0.5; done"


async def _containers_of(dep: str, node_id: str) -> list[Any]:
    labels = {"encedeus.deployment": dep, "encedeus.node": node_id}
    return await asyncio.to_thread(labelled_containers, labels)


async def _running_on(fast_api: Client, user: Account, dep: str) -> str | None:
    status = await expect_json(
        await fast_api.get(f"/v1/deployments/{dep}/status", headers=user.headers)
    )
    ready = [i["node_id"] for i in status["instances"] if i["ready"]]
    return ready[0] if len(ready) == 1 and status["replicas"]["ready"] == 1 else None


@pytest.mark.docker
async def test_delete_removes_the_nodes_containers_and_reschedules(
    fast_api: Client, tmp_path: Path
) -> None:
    admin = await register(fast_api)
    async with (
        enrolled_agent(fast_api, admin, tmp_path / "a", "node-a") as node_a,
        enrolled_agent(fast_api, admin, tmp_path / "b", "node-b") as node_b,
    ):
        body = {"app_name": "web", "image": TEST_IMAGE, "command": LOOP, "stop_timeout": 2}
        dep = (
            await expect_json(
                await fast_api.post("/v1/deployments", json=body, headers=admin.headers), 201
            )
        )["id"]
        first = await eventually(lambda: _running_on(fast_api, admin, dep), timeout=30)
        other = {node_a.identity.node_id, node_b.identity.node_id} - {first}
        assert len(other) == 1
        assert len(await _containers_of(dep, first)) == 1

        deleted = await expect_json(
            await fast_api.delete(f"/v1/nodes/{first}", headers=admin.headers)
        )
        assert deleted["containers_removed"] is True
        assert deleted["removed_containers"] == 1
        assert deleted["data_deleted"] is False
        assert deleted["message"] == "Node deleted successfully"
        # Gone by the time the answer arrives, not eventually.
        assert await _containers_of(dep, first) == []

        moved = await eventually(lambda: _running_on(fast_api, admin, dep), timeout=30)
        assert moved == other.pop()
        assert len(await _containers_of(dep, moved)) == 1
        await expect_json(await fast_api.delete(f"/v1/deployments/{dep}", headers=admin.headers))


async def test_delete_with_an_unreachable_agent_still_deletes(fast_api: Client) -> None:
    admin = await register(fast_api)
    token = await create_node(fast_api, admin, "gone")
    enrolled = await expect_json(
        await fast_api.post(
            "/v1/nodes/enroll",
            # Nothing listens there: the agent cannot be reached.
            json={"join_token": token, "grpc_address": "127.0.0.1:9", "fingerprint": {}},
        )
    )
    path = f"/v1/nodes/{enrolled['node_id']}"
    deleted = await expect_json(
        await fast_api.delete(f"{path}?delete_data=true", headers=admin.headers)
    )
    assert deleted["containers_removed"] is False
    assert deleted["removed_containers"] == 0
    assert deleted["data_deleted"] is False
    assert "could not be reached" in deleted["message"]
    assert (await fast_api.get(path, headers=admin.headers)).status == 404

    # A node that never enrolled has nothing on any host: nothing to report.
    await create_node(fast_api, admin, "pending")
    nodes = await expect_json(await fast_api.get("/v1/nodes", headers=admin.headers))
    pending = next(n for n in nodes["nodes"] if n["name"] == "pending")
    answer = await expect_json(
        await fast_api.delete(f"/v1/nodes/{pending['id']}", headers=admin.headers)
    )
    assert answer["containers_removed"] is True
    assert answer["removed_containers"] == 0
