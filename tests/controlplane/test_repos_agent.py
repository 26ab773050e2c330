"""Seed 003 end to end on a real agent and dockerd: watch a repo on a local forge,
see a new release on check, and run a task whose command runs that release's asset."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.conftest import TEST_IMAGE
from tests.controlplane.accounts_support import Account, register
from tests.controlplane.cluster_support import FAST, enrolled_agent, eventually
from tests.controlplane.conftest import SQLITE_ONLY, ConfigFactory, start_client
from tests.controlplane.forge_support import FakeForgeState, fake_forge

Client = TestClient[Any, Any]
pytestmark = [SQLITE_ONLY, pytest.mark.docker]


@pytest.fixture
async def forge() -> AsyncIterator[FakeForgeState]:
    async with fake_forge() as state:
        state.publish("acme/tool", "v1.0.0", {"tool.sh": b"echo tool one\n"})
        yield state


@pytest.fixture
async def client(make_config: ConfigFactory, forge: FakeForgeState) -> AsyncIterator[Client]:
    config = make_config(
        **FAST,
        forge_api_url=forge.base_url,
        task_fetch_allow_private=True,
        forge_anonymous_cache_seconds=0,
    )
    client = await start_client(config)
    try:
        yield client
    finally:
        await client.close()


async def _status(client: Client, user: Account, task_id: str) -> str | None:
    response = await client.get(f"/v1/tasks/{task_id}/status", headers=user.headers)
    status: str = (await response.json())["status"]
    return status if status in ("Succeeded", "Failed") else None


async def _started(client: Client, user: Account, task_id: str) -> bool:
    """Start the task (204), or queue it until the node is ready (202); False while
    the node is not enrolled yet (422: nothing could ever hold it)."""
    response = await client.post(f"/v1/tasks/{task_id}", headers=user.headers)
    if response.status in (422, 503):
        return False
    assert response.status in (202, 204), await response.text()
    return True


async def test_new_release_seen_then_its_asset_runs(
    client: Client, forge: FakeForgeState, tmp_path: Path
) -> None:
    admin = await register(client)
    added = await client.post("/v1/repos", json={"ownerName": "acme", "name": "tool"},
                              headers=admin.headers)  # fmt: skip
    repo = await added.json()
    assert added.status == 201, repo

    forge.publish("acme/tool", "v1.1.0", {"tool.sh": b"echo tool two from $(pwd)\n"})
    report = await (await client.patch("/v1/repos", headers=admin.headers)).json()
    assert report["updated"] == [repo["id"]]

    async with enrolled_agent(client, admin, tmp_path / "agent", "node-a"):
        created = await client.post("/v1/tasks", headers=admin.headers, json={
            "containerImage": TEST_IMAGE, "runCommand": "./tool.sh",
            "repo": repo["id"], "releaseAsset": "tool.sh",
        })  # fmt: skip
        task = await created.json()
        assert created.status == 201, task
        assert task["release_tag"] == "v1.1.0"
        await eventually(lambda: _started(client, admin, task["id"]), timeout=30)
        status = await eventually(lambda: _status(client, admin, task["id"]), timeout=60)
        logs = await (
            await client.get(f"/v1/tasks/{task['id']}/logs", headers=admin.headers)
        ).text()
        assert status == "Succeeded", logs
        assert "tool two from /" in logs
