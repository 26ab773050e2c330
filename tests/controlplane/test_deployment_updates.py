"""Concurrent updates of one deployment: each change gets its own generation, so the
reconciler rolls every one of them out. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.controlplane.accounts_support import register

Client = TestClient[Any, Any]
pytestmark = pytest.mark.usefixtures("blocking_guard")
UPDATES = 8


async def test_concurrent_changes_each_bump_the_generation(api: Client) -> None:
    owner = await register(api)
    created = await api.post(
        "/v1/deployments",
        json={"app_name": "web", "image": "encedeus/busybox:latest"},
        headers=owner.headers,
    )
    assert created.status == 201, await created.text()
    path = f"/v1/deployments/{(await created.json())['id']}"

    async def change(value: int) -> int:
        body = {"env_vars": {"N": str(value)}}
        response = await api.put(path, json=body, headers=owner.headers)
        return response.status

    assert await asyncio.gather(*(change(n) for n in range(UPDATES))) == [200] * UPDATES
    final = await (await api.get(path, headers=owner.headers)).json()
    assert final["generation"] == 1 + UPDATES

    same = await api.put(path, json={"env_vars": final["env_vars"]}, headers=owner.headers)
    assert (await same.json())["message"] == "Deployment updated"  # nothing to roll out
    again = await (await api.get(path, headers=owner.headers)).json()
    assert again["generation"] == 1 + UPDATES
