"""Per-account quotas through the API, on SQLite and PostgreSQL: the configured default,
what an admin sets, how usage is counted and every place it is enforced."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.controlplane.accounts_support import Account, error_code, expect_json, register
from tests.controlplane.conftest import ConfigFactory, start_client

Client = TestClient[Any, Any]
pytestmark = pytest.mark.usefixtures("blocking_guard")
MI = 2**20
IMAGE = "encedeus/busybox:latest"
UNLIMITED = dict.fromkeys(("deployments", "replicas", "cpu_millis", "memory_bytes", "disk_bytes"))


@pytest.fixture
async def client(make_config: ConfigFactory) -> AsyncIterator[Client]:
    """A control plane whose new accounts get 2 deployments and 3 replicas."""
    client = await start_client(make_config(default_quota={"deployments": 2, "replicas": 3}))
    try:
        yield client
    finally:
        await client.close()


async def _deploy(api: Client, owner: Account, name: str, **fields: Any) -> Any:
    body = {"app_name": name, "image": IMAGE, **fields}
    return await api.post("/v1/deployments", json=body, headers=owner.headers)


async def _set_quota(api: Client, admin: Account, owner: Account, **limits: Any) -> Any:
    response = await api.put(f"/v1/users/{owner.id}/quota", json=limits, headers=admin.headers)
    return await expect_json(response)


async def _refused(response: Any, resource: str) -> dict[str, Any]:
    body = await response.json()
    assert response.status == 403, body
    assert body["error"]["code"] == "quota_exceeded"
    (detail,) = [d for d in body["error"]["details"] if d["resource"] == resource]
    assert resource in body["error"]["message"]
    assert str(detail["limit"]) in body["error"]["message"]
    return detail  # type: ignore[no-any-return]


async def test_new_accounts_get_the_configured_default_and_see_their_usage(
    client: Client,
) -> None:
    admin = await register(client)  # admins get the default too: they are not exempt
    owner = await register(client)
    assert (await _deploy(client, owner, "web", replicas=2)).status == 201
    mine = await expect_json(await client.get("/v1/user/quota", headers=owner.headers))
    assert mine["limits"] == {**UNLIMITED, "deployments": 2, "replicas": 3}
    assert mine["usage"] == {
        "deployments": 1,
        "replicas": 2,
        "cpu_millis": 200,
        "memory_bytes": 256 * MI,
        "disk_bytes": 0,
    }
    assert mine["user_id"] == owner.id
    for path in (f"/v1/users/{owner.id}/quota", "/v1/users/@me/quota"):
        assert await expect_json(await client.get(path, headers=owner.headers)) == mine
    by_admin = await client.get(f"/v1/users/{owner.id}/quota", headers=admin.headers)
    assert await expect_json(by_admin) == mine
    admins = await expect_json(await client.get("/v1/user/quota", headers=admin.headers))
    assert admins["limits"] == mine["limits"]


async def test_only_admins_set_quotas_and_only_they_read_other_accounts(client: Client) -> None:
    admin = await register(client)
    owner = await register(client)
    other = await register(client)
    peek = await client.get(f"/v1/users/{other.id}/quota", headers=owner.headers)
    assert peek.status == 403
    assert await error_code(peek) == "admin_required"
    own_raise = await client.put(
        f"/v1/users/{owner.id}/quota", json={"deployments": 100}, headers=owner.headers
    )
    assert own_raise.status == 403
    assert await error_code(own_raise) == "admin_required"
    missing = "00000000-0000-0000-0000-000000000000"
    for method in ("GET", "PUT"):
        response = await client.request(
            method, f"/v1/users/{missing}/quota", json={}, headers=admin.headers
        )
        assert response.status == 404
        assert await error_code(response) == "user_not_found"
    bad = await client.put(
        f"/v1/users/{owner.id}/quota", json={"replicas": -1}, headers=admin.headers
    )
    assert bad.status == 400
    # PUT replaces: what is omitted becomes unlimited.
    quota = await _set_quota(client, admin, owner, memory_bytes=MI)
    assert quota["limits"] == {**UNLIMITED, "memory_bytes": MI}


async def test_deployments_and_replicas_are_counted_with_stopped_ones(client: Client) -> None:
    owner = await register(client)
    first = await expect_json(await _deploy(client, owner, "one", replicas=2), 201)
    path = f"/v1/deployments/{first['id']}"
    detail = await _refused(await _deploy(client, owner, "two", replicas=2), "replicas")
    assert detail == {"resource": "replicas", "limit": 3, "usage": 2, "requested": 4,
                      "unit": "replicas"}  # fmt: skip
    await expect_json(await client.post(f"{path}/stop", headers=owner.headers))
    # Stopped, it still holds its replicas.
    await _refused(await _deploy(client, owner, "two", replicas=2), "replicas")
    assert (await _deploy(client, owner, "two", replicas=1)).status == 201
    await _refused(await _deploy(client, owner, "three", replicas=0), "deployments")
    # Starting a stopped deployment uses nothing it did not hold already.
    assert (await client.post(f"{path}/start", headers=owner.headers)).status == 200
    # Deleting frees.
    assert (await client.delete(path, headers=owner.headers)).status == 200
    assert (await _deploy(client, owner, "three", replicas=2)).status == 201


async def test_scale_and_resource_updates_are_enforced_and_shrinking_always_passes(
    client: Client,
) -> None:
    admin = await register(client)
    owner = await register(client)
    created = await expect_json(await _deploy(client, owner, "web", replicas=2), 201)
    path = f"/v1/deployments/{created['id']}"
    scale = await client.patch(f"{path}/scale", json={"replicas": 4}, headers=owner.headers)
    await _refused(scale, "replicas")
    await _set_quota(client, admin, owner, replicas=3, memory_bytes=300 * MI)
    bigger = await client.put(
        path, json={"resources": {"cpu": "100m", "memory": "256Mi"}}, headers=owner.headers
    )
    assert (await _refused(bigger, "memory_bytes"))["requested"] == 512 * MI
    replicas_too = await client.put(path, json={"replicas": 4}, headers=owner.headers)
    await _refused(replicas_too, "replicas")
    # The admin lowers the limits below what the account holds: nothing stops, changes
    # that use no more still pass, and only growth is refused.
    await _set_quota(client, admin, owner, replicas=1, memory_bytes=MI)
    assert (await client.put(path, json={"image": "other:1"}, headers=owner.headers)).status == 200
    await _refused(
        await client.patch(f"{path}/scale", json={"replicas": 3}, headers=owner.headers),
        "replicas",
    )
    down = await client.patch(f"{path}/scale", json={"replicas": 1}, headers=owner.headers)
    assert down.status == 200
    state = await expect_json(await client.get(path, headers=owner.headers))
    assert state["replicas"] == 1
    assert state["resources"]["memory"] == "128Mi"


async def test_disk_limits_count_per_replica_and_are_enforced(client: Client) -> None:
    admin = await register(client)
    owner = await register(client)
    disk = {"cpu": "100m", "memory": "128Mi", "disk": "1Gi"}
    created = await expect_json(
        await _deploy(client, owner, "files", replicas=2, resources=disk), 201
    )
    mine = await expect_json(await client.get("/v1/user/quota", headers=owner.headers))
    assert mine["usage"]["disk_bytes"] == 2 * 1024 * MI
    path = f"/v1/deployments/{created['id']}"
    assert (await expect_json(await client.get(path, headers=owner.headers)))["resources"][
        "disk"
    ] == "1Gi"
    await _set_quota(client, admin, owner, disk_bytes=3 * 1024 * MI)
    bigger = await client.put(
        path, json={"resources": {**disk, "disk": "2Gi"}}, headers=owner.headers
    )
    assert (await _refused(bigger, "disk_bytes"))["requested"] == 4 * 1024 * MI
    await _refused(
        await client.patch(f"{path}/scale", json={"replicas": 4}, headers=owner.headers),
        "disk_bytes",
    )
    bad = await client.put(path, json={"resources": {**disk, "disk": "1Mi"}}, headers=owner.headers)
    assert bad.status == 400


async def test_tasks_count_until_they_are_deleted(client: Client) -> None:
    admin = await register(client)
    owner = await register(client)
    await _set_quota(client, admin, owner, cpu_millis=1500, memory_bytes=MI * 1024)
    task = {"image": IMAGE, "command": "true", "resources": {"cpu": "1", "memory": "512Mi"}}
    first = await expect_json(await client.post("/v1/tasks", json=task, headers=owner.headers), 201)
    second = await client.post("/v1/tasks", json=task, headers=owner.headers)
    detail = await _refused(second, "cpu_millis")
    assert (detail["limit"], detail["usage"], detail["requested"]) == (1500, 1000, 2000)
    # Deployments and tasks share the CPU and memory totals.
    await _refused(
        await _deploy(client, owner, "web", resources={"cpu": "600m", "memory": "64Mi"}),
        "cpu_millis",
    )
    assert (await client.delete(f"/v1/tasks/{first['id']}", headers=owner.headers)).status == 200
    assert (await client.post("/v1/tasks", json=task, headers=owner.headers)).status == 201


@pytest.mark.parametrize("kind", ["deployments", "tasks", "scale"])
async def test_concurrent_writes_cannot_both_take_the_last_room(client: Client, kind: str) -> None:
    admin = await register(client)
    owner = await register(client)
    attempts = 8
    deployments = None if kind == "scale" else 2
    await _set_quota(client, admin, owner, deployments=deployments, replicas=2,
                     memory_bytes=2 * 512 * MI)  # fmt: skip
    apps = [
        (await expect_json(await _deploy(client, owner, f"idle{n}", replicas=0), 201))["id"]
        for n in range(attempts if kind == "scale" else 0)
    ]

    async def write(n: int) -> int:
        if kind == "deployments":
            response = await _deploy(client, owner, f"app{n}")
        elif kind == "scale":
            scale = {"replicas": 1}
            response = await client.patch(
                f"/v1/deployments/{apps[n]}/scale", json=scale, headers=owner.headers
            )
        else:
            body = {"image": IMAGE, "command": "true", "resources": {"memory": "512Mi"}}
            response = await client.post("/v1/tasks", json=body, headers=owner.headers)
        status: int = response.status
        return status

    statuses = await asyncio.gather(*(write(n) for n in range(attempts)))
    ok = 200 if kind == "scale" else 201
    assert sorted(statuses) == [ok, ok] + [403] * (attempts - 2)
    usage = (await expect_json(await client.get("/v1/user/quota", headers=owner.headers)))["usage"]
    assert usage["replicas"] <= 2
    assert usage["memory_bytes"] <= 2 * 512 * MI
