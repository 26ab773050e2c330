"""Deployments end to end inside one process: a real control plane (SQLite), an
enrolled in-process agent, the real dockerd and the test image."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from agent.daemon import RunningAgent
from tests.conftest import TEST_IMAGE
from tests.controlplane.accounts_support import Account, error_code, expect_json, register
from tests.controlplane.cluster_support import (
    FAST,
    count_submits,
    enrolled_agent,
    eventually,
)
from tests.controlplane.conftest import SQLITE_ONLY, ConfigFactory, start_client
from tests.docker_support import labelled_containers

pytestmark = [pytest.mark.docker, SQLITE_ONLY]
# PID 1 ignores SIGTERM unless it traps it: trap, so stops take no stop timeout.
LOOP = "trap 'exit 0' TERM; i=0; while true; do echo line $i; i=$((i+1)); sleep 0.2; done"


@pytest.fixture
async def cluster(
    make_config: ConfigFactory, tmp_path: Path
) -> AsyncIterator[tuple[TestClient[Any, Any], Account, RunningAgent]]:
    client = await start_client(make_config(**FAST))
    try:
        admin = await register(client)
        async with enrolled_agent(client, admin, tmp_path / "agent", "node-a") as agent:
            yield client, admin, agent
    finally:
        await client.close()


async def _status(client: TestClient[Any, Any], user: Account, dep: str) -> Any:
    return await expect_json(
        await client.get(f"/v1/deployments/{dep}/status", headers=user.headers)
    )


async def _create(client: TestClient[Any, Any], user: Account, **fields: Any) -> str:
    body = {
        "app_name": "web",
        "image": TEST_IMAGE,
        "command": LOOP,
        "replicas": 2,
        "stop_timeout": 2,
    }
    body.update(fields)
    created = await expect_json(
        await client.post("/v1/deployments", json=body, headers=user.headers), 201
    )
    assert created["status"] == "pending"
    deployment_id: str = created["id"]
    return deployment_id


def _ready(count: int, generation: int | None = None) -> Any:
    def check(status: Any) -> bool:
        instances = status["instances"]
        return status["replicas"]["ready"] == count and all(
            generation is None or i["generation"] == generation for i in instances
        )

    return check


async def _wait_status(
    client: TestClient[Any, Any], user: Account, dep: str, check: Any, timeout: float = 20
) -> Any:
    async def probe() -> Any:
        status = await _status(client, user, dep)
        return status if check(status) else None

    return await eventually(probe, timeout=timeout)


async def test_deployment_lifecycle(
    cluster: tuple[TestClient[Any, Any], Account, RunningAgent],
) -> None:
    client, user, agent = cluster
    dep = await _create(client, user, env_vars={"GREETING": "one"})
    # Readiness and the status answer's `status` are derived live from the agents'
    # reports; the deployment's recorded `status` is written by the reconciler pass
    # that follows them (waited for below, before the detail is read).
    status = await _wait_status(
        client, user, dep, lambda s: _ready(2)(s) and s["status"] == "running"
    )
    assert {i["node_id"] for i in status["instances"]} == {agent.identity.node_id}
    assert status["health"] == "healthy"
    node = await expect_json(
        await client.get(f"/v1/nodes/{agent.identity.node_id}", headers=user.headers)
    )
    assert node["sftp_address"]
    assert {i["sftp_address"] for i in status["instances"]} == {node["sftp_address"]}

    async def recorded_running() -> Any:
        detail = await expect_json(await client.get(f"/v1/deployments/{dep}", headers=user.headers))
        return detail if detail["status"] == "running" else None

    detail = await eventually(recorded_running)
    assert detail["status"] == "running"

    async def metrics() -> Any:
        body = await expect_json(
            await client.get(f"/v1/deployments/{dep}/metrics", headers=user.headers)
        )
        replicas = body["metrics"]["replicas"]
        return body if len(replicas) == 2 and body["metrics"]["memory_bytes"] > 0 else None

    await eventually(metrics)
    logs = await expect_json(
        await client.get(f"/v1/deployments/{dep}/logs?tail=5", headers=user.headers)
    )
    assert logs["logs"]
    assert logs["logs"][0]["message"].startswith("line")

    async with client.get(
        f"/v1/deployments/{dep}/logs?tail=1&follow=true", headers=user.headers
    ) as stream:
        assert stream.headers["Content-Type"].startswith("application/x-ndjson")
        first = json.loads(await stream.content.readline())
        assert first["message"].startswith("line")

    socket = await client.ws_connect(f"/v1/deployments/{dep}/logs/stream", headers=user.headers)
    frame = await socket.receive_json(timeout=10)
    assert frame["message"].startswith("line")
    await socket.close()

    console = await expect_json(
        await client.get(f"/v1/deployments/{dep}/console", headers=user.headers)
    )
    assert console["url"].endswith(f"/api/servers/{console['server_id']}/ws")

    # Rolling update: a new generation replaces the replicas one at a time.
    await expect_json(
        await client.put(
            f"/v1/deployments/{dep}", json={"env_vars": {"GREETING": "two"}}, headers=user.headers
        )
    )
    await _wait_status(client, user, dep, _ready(2, generation=2), timeout=30)

    await expect_json(
        await client.patch(
            f"/v1/deployments/{dep}/scale", json={"replicas": 1}, headers=user.headers
        )
    )
    await _wait_status(client, user, dep, lambda s: len(s["instances"]) == 1 and _ready(1)(s))
    labels = {"encedeus.deployment": dep}
    await eventually(lambda: _async(len(labelled_containers(labels)) == 1))
    # The removed slot's data is kept, listed with the date it may be removed.
    left = await expect_json(
        await client.get(f"/v1/deployments/{dep}/orphaned-volumes", headers=user.headers)
    )
    (released,) = left["volumes"]
    assert (released["deployment_id"], released["ordinal"]) == (dep, 1)
    kept_for = datetime.fromisoformat(released["delete_after"]) - datetime.fromisoformat(
        released["released_at"]
    )
    assert kept_for.total_seconds() == 7 * 86400  # volume_grace_seconds' default

    await expect_json(await client.post(f"/v1/deployments/{dep}/stop", headers=user.headers))
    await eventually(lambda: _async(not labelled_containers(labels, running_only=True)))
    assert (await _status(client, user, dep))["health"] == "stopped"  # not "degraded"
    await expect_json(await client.post(f"/v1/deployments/{dep}/start", headers=user.headers))
    await _wait_status(client, user, dep, _ready(1))
    assert (await _status(client, user, dep))["restart_count"] == 0  # a start is no crash

    deleted = await expect_json(
        await client.delete(f"/v1/deployments/{dep}?delete_data=true", headers=user.headers)
    )
    assert deleted["namespace_deleted"] is True
    assert deleted["data_deleted"] is True
    await eventually(lambda: _async(not labelled_containers(labels)))


async def _async(value: Any) -> Any:
    return value


async def test_crash_loop_backs_off_and_shows_in_status(
    cluster: tuple[TestClient[Any, Any], Account, RunningAgent],
) -> None:
    client, user, _ = cluster
    dep = await _create(client, user, app_name="crasher", command="exit 3", replicas=1)
    status = await _wait_status(
        client, user, dep, lambda s: s["restart_count"] >= 3 and s["backoff_until"], timeout=30
    )
    assert status["instances"][0]["restart_count"] >= 3
    detail = await expect_json(await client.get(f"/v1/deployments/{dep}", headers=user.headers))
    assert detail["status"] == "failed"


async def test_deployments_belong_to_their_owner(
    cluster: tuple[TestClient[Any, Any], Account, RunningAgent],
) -> None:
    client, owner, _ = cluster
    dep = await _create(client, owner, app_name="private", replicas=0)
    other = await register(client)
    for method, suffix in [
        ("GET", ""),
        ("GET", "/status"),
        ("GET", "/metrics"),
        ("GET", "/logs"),
        ("GET", "/console"),
        ("POST", "/stop"),
        ("DELETE", ""),
    ]:
        response = await client.request(
            method, f"/v1/deployments/{dep}{suffix}", headers=other.headers
        )
        assert response.status == 404, (method, suffix)
        assert await error_code(response) == "deployment_not_found"
    listed = await expect_json(await client.get("/v1/deployments", headers=other.headers))
    assert listed["deployments"] == []
    duplicate = await client.post(
        "/v1/deployments",
        json={"app_name": "private", "image": TEST_IMAGE},
        headers=owner.headers,
    )
    assert duplicate.status == 409
    assert await error_code(duplicate) == "app_name_taken"
    # The name is the app's hostname label: no other account may hold it either.
    taken = await client.post(
        "/v1/deployments",
        json={"app_name": "private", "image": TEST_IMAGE, "replicas": 0},
        headers=other.headers,
    )
    assert taken.status == 409
    assert await error_code(taken) == "app_name_taken"


async def test_unknown_image_fails_with_the_agents_reason(
    cluster: tuple[TestClient[Any, Any], Account, RunningAgent],
) -> None:
    client, user, agent = cluster
    submits = count_submits(agent)
    # "never": the image must be on the node (and no pull leaves this machine).
    dep = await _create(
        client,
        user,
        app_name="ghost",
        image="encedeus/absent:never",
        replicas=1,
        pull_policy="never",
    )

    async def failed() -> Any:
        detail = await expect_json(await client.get(f"/v1/deployments/{dep}", headers=user.headers))
        return detail if detail["status"] == "failed" else None

    detail = await eventually(failed)
    assert detail["error_message"]
    listed = await expect_json(
        await client.get("/v1/deployments?status=failed", headers=user.headers)
    )
    assert [d["id"] for d in listed["deployments"]] == [dep]
    # Retried after the back-off cap (FAST: 2 s), not by every pass its failure wakes.
    before = submits()
    await asyncio.sleep(3)
    assert submits() - before <= 2, submits() - before


async def test_an_update_to_an_unknown_image_leaves_the_replica_running(
    cluster: tuple[TestClient[Any, Any], Account, RunningAgent],
) -> None:
    client, user, _ = cluster
    dep = await _create(client, user, app_name="steady", replicas=1)
    await _wait_status(client, user, dep, _ready(1))
    labels = {"encedeus.deployment": dep}
    [before] = labelled_containers(labels, running_only=True)
    assert before.labels["encedeus.app"] == "steady"  # for `docker ps` readers only

    await expect_json(
        await client.put(
            f"/v1/deployments/{dep}",
            json={"image": "encedeus/absent:never", "pull_policy": "never"},
            headers=user.headers,
        )
    )

    async def refused() -> Any:
        detail = await expect_json(await client.get(f"/v1/deployments/{dep}", headers=user.headers))
        return detail if "not present" in (detail["error_message"] or "") else None

    await eventually(refused)
    [after] = labelled_containers(labels, running_only=True)
    assert after.id == before.id
    assert (await _status(client, user, dep))["replicas"]["ready"] == 1


async def test_status_shows_the_host_port_of_each_published_port(
    cluster: tuple[TestClient[Any, Any], Account, RunningAgent],
) -> None:
    client, user, _ = cluster
    dep = await _create(client, user, app_name="published", replicas=1, ports=[8080])
    status = await _wait_status(client, user, dep, _ready(1))
    [published] = status["instances"][0]["ports"]
    assert published["container_port"] == 8080
    assert 31000 <= published["host_port"] <= 31999  # the node's port range
    [container] = labelled_containers({"encedeus.deployment": dep}, running_only=True)
    bindings = container.attrs["HostConfig"]["PortBindings"]["8080/tcp"]
    assert int(bindings[0]["HostPort"]) == published["host_port"]


async def test_run_as_root_is_the_owners_choice_and_reaches_the_container(
    cluster: tuple[TestClient[Any, Any], Account, RunningAgent],
) -> None:
    client, user, _ = cluster

    def container_user(dep: str) -> str:
        [container] = labelled_containers({"encedeus.deployment": dep}, running_only=True)
        return str(container.attrs["Config"]["User"])

    dep = await _create(client, user, app_name="rooted", replicas=1, run_as_root=True)
    await _wait_status(client, user, dep, _ready(1))
    detail = await expect_json(await client.get(f"/v1/deployments/{dep}", headers=user.headers))
    assert detail["run_as_root"] is True
    assert container_user(dep) == "0:0"

    # Back to the node's unprivileged user: a spec change, rolled out.
    changed = await client.put(
        f"/v1/deployments/{dep}", json={"run_as_root": False}, headers=user.headers
    )
    assert (await expect_json(changed))["status"] == "updating"
    await _wait_status(client, user, dep, _ready(1, generation=detail["generation"] + 1))
    assert container_user(dep) == "988:988"

    bad = await client.post(
        "/v1/deployments",
        json={"app_name": "bad", "image": TEST_IMAGE, "run_as_root": "sometimes"},
        headers=user.headers,
    )
    assert bad.status == 400


async def test_a_disk_limit_reaches_the_container_and_raising_it_rolls_out(
    cluster: tuple[TestClient[Any, Any], Account, RunningAgent],
) -> None:
    client, user, agent = cluster
    fill = (
        "dd if=/dev/zero of=/data/fill bs=1M count=64 2>/tmp/err; wc -c </data/fill >/tmp/size;"
        " rm /data/fill; cp /tmp/err /tmp/size /data/; echo >/data/done; " + LOOP
    )
    disk = {"cpu": "100m", "memory": "128Mi", "disk": "16Mi"}
    dep = await _create(client, user, app_name="disky", command=fill, replicas=1, resources=disk)
    status = await _wait_status(client, user, dep, _ready(1), timeout=30)
    volume = Path(agent.config.data_dir) / "volumes" / status["instances"][0]["volume_id"]
    await eventually(lambda: _async((volume / "done").exists()))
    assert "No space left on device" in (volume / "err").read_text()
    assert 8 * 2**20 < int((volume / "size").read_text()) <= 16 * 2**20

    await expect_json(
        await client.put(
            f"/v1/deployments/{dep}",
            json={"resources": {**disk, "disk": "64Mi"}},
            headers=user.headers,
        )
    )
    await _wait_status(client, user, dep, _ready(1, generation=2), timeout=30)
    assert os.statvfs(volume).f_blocks * os.statvfs(volume).f_frsize > 48 * 2**20
