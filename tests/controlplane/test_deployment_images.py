"""Deployments of images from a real registry (the loopback registry of
scripts/setup-system.sh with htpasswd auth, and private ones a test starts): a real
control plane (SQLite), an enrolled in-process agent and the real dockerd."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlmodel import select

from agent.daemon import RunningAgent
from controlplane.api.image_checks import ImageAccess
from controlplane.cli import main
from controlplane.db.tables import Deployment, Node
from controlplane.security.registry_credentials import RegistryCredentials
from controlplane.security.secrets import SecretBox, resolve_secrets_key
from controlplane.state import AGENT_POOL, CONFIG, DATABASE, IMAGE_CHECKS
from tests.controlplane.accounts_support import Account, error_code, expect_json, register
from tests.controlplane.cluster_support import FAST, count_submits, enrolled_agent, eventually
from tests.controlplane.conftest import SQLITE_ONLY, ConfigFactory, start_client
from tests.docker_support import docker_engine, labelled_containers
from tests.registry_support import (
    REGISTRY,
    REGISTRY_PASSWORD,
    REGISTRY_USER,
    RegistryProxy,
    build_layered_image,
    private_registry,
    push,
    pushed_copy,
    remove_local_copies,
)

pytestmark = [pytest.mark.docker, SQLITE_ONLY]
LOOP = "trap 'exit 0' TERM; while true; do sleep 0.2; done"
CLI_LOOP = "sh -c 'trap \"exit 0\" TERM; while true; do sleep 0.2; done'"
Cluster = tuple[TestClient[Any, Any], Account, RunningAgent]


@pytest.fixture
async def cluster(make_config: ConfigFactory, tmp_path: Path) -> AsyncIterator[Cluster]:
    config = make_config(**FAST, image_allowlist=[REGISTRY, "127.0.0.1:"])
    client = await start_client(config)
    try:
        admin = await register(client)
        async with enrolled_agent(client, admin, tmp_path / "agent", "node-a") as agent:
            yield client, admin, agent
    finally:
        await client.close()


def reported_later(client: TestClient[Any, Any]) -> None:
    """No image check at create: the pull's own failure is what the test is about."""
    client.app[IMAGE_CHECKS].seconds = 0


async def node_ready(client: TestClient[Any, Any]) -> None:
    """Wait until the enrolled node is ready in the agent pool (it answers checks)."""
    pool = client.app[AGENT_POOL]

    async def ready() -> bool | None:
        async with client.app[DATABASE].session() as session:
            ids = (await session.exec(select(Node.id))).all()
        return True if any(pool.state(str(i)) == "ready" for i in ids) else None

    await eventually(ready, timeout=30)


def auth(password: str = REGISTRY_PASSWORD) -> dict[str, str]:
    return {"username": REGISTRY_USER, "password": password}


async def deploy(client: TestClient[Any, Any], user: Account, image: str, **fields: Any) -> str:
    body = {"app_name": "pulled", "image": image, "command": LOOP, "stop_timeout": 2, **fields}
    created = await expect_json(
        await client.post("/v1/deployments", json=body, headers=user.headers), 201
    )
    return str(created["id"])


async def details(client: TestClient[Any, Any], user: Account, dep: str) -> Any:
    return await expect_json(await client.get(f"/v1/deployments/{dep}", headers=user.headers))


async def status(client: TestClient[Any, Any], user: Account, dep: str) -> Any:
    return await expect_json(
        await client.get(f"/v1/deployments/{dep}/status", headers=user.headers)
    )


async def until_status(client: TestClient[Any, Any], user: Account, dep: str, wanted: str) -> Any:
    """The details once the status is `wanted` (for "failed": with an error code, as
    a deployment created before its node reported is briefly unschedulable)."""

    async def check() -> Any:
        found = await details(client, user, dep)
        settled = found["status"] == wanted and (wanted != "failed" or found["error_code"])
        return found if settled else None

    return await eventually(check, timeout=30)


async def test_deploy_with_credentials_pins_the_digest_and_hides_the_password(
    cluster: Cluster, capfd: pytest.CaptureFixture[str]
) -> None:
    client, user, _ = cluster
    with pushed_copy() as image:
        dep = await deploy(client, user, image, registry_auth=auth(), replicas=2)
        running = await until_status(client, user, dep, "running")
        assert running["registry_auth"] == {
            "username": REGISTRY_USER,
            "server_address": "",
            "configured": True,
        }
        assert running["pull_policy"] == "if_not_present"
        assert running["image_digest"].startswith(image.rpartition(":")[0] + "@sha256:")
        everything = json.dumps(
            [
                running,
                await status(client, user, dep),
                await expect_json(await client.get("/v1/deployments", headers=user.headers)),
            ]
        )
        assert REGISTRY_PASSWORD not in everything
        containers = labelled_containers({"encedeus.deployment": dep})
        assert {c.labels["encedeus.image-digest"] for c in containers} == {running["image_digest"]}
        # At rest: sealed with the control plane's key, never in the clear.
        async with client.app[DATABASE].session() as session:
            row = (await session.exec(select(Deployment))).one()
        assert row.registry_password_sealed is not None
        assert REGISTRY_PASSWORD not in row.registry_password_sealed
        key = await asyncio.to_thread(resolve_secrets_key, client.app[CONFIG])
        opened = RegistryCredentials(SecretBox(key)).open(row.registry_password_sealed, row.id)
        assert opened == REGISTRY_PASSWORD
    logged = capfd.readouterr()
    assert "image_pulled" in logged.out + logged.err  # the logs were captured...
    assert REGISTRY_PASSWORD not in logged.out + logged.err  # ...and never hold it


@pytest.mark.parametrize(
    ("credentials", "tag", "code"),
    [
        (None, "v1", "registry_denied"),
        (auth("wrong-password"), "v1", "registry_denied"),
        (auth(), "no-such-tag", "image_not_found"),
    ],
)
async def test_failed_pulls_fail_the_deployment_with_their_code_and_no_retry_storm(
    cluster: Cluster, credentials: dict[str, str] | None, tag: str, code: str
) -> None:
    client, user, agent = cluster
    reported_later(client)
    submits = count_submits(agent)
    with pushed_copy() as image:
        extra = {"registry_auth": credentials} if credentials else {}
        dep = await deploy(client, user, image.rpartition(":")[0] + f":{tag}", **extra)
        failed = await until_status(client, user, dep, "failed")
        assert failed["error_code"] == code, json.dumps(failed)
        assert "wrong-password" not in failed["error_message"]
        shown = await status(client, user, dep)
        assert shown["error"]["code"] == code
        # Retried after the back-off cap (FAST: 2 s), not at every pass.
        before = submits()
        await asyncio.sleep(3)
        assert submits() - before <= 2, submits() - before


async def test_bad_references_are_refused_at_create(cluster: Cluster) -> None:
    client, user, _ = cluster
    for image in ("Upper/Case", "127.0.0.1:5000/x:bad tag", "x@sha256:short", ""):
        response = await client.post(
            "/v1/deployments", json={"app_name": "bad", "image": image}, headers=user.headers
        )
        assert response.status == 400, image
        body = await response.json()
        assert body["error"]["code"] == "validation_error"
        assert any(d["field"] == "body.image" for d in body["error"]["details"]), body
    response = await client.put(
        "/v1/deployments/00000000-0000-0000-0000-000000000000",
        json={"image": "UPPER"},
        headers=user.headers,
    )
    assert await error_code(response) == "validation_error"


async def test_the_allowlist_refuses_other_registries_naming_the_rule(cluster: Cluster) -> None:
    client, user, _ = cluster
    for image in ("docker.io/library/nginx:1", "nginx", "ghcr.io/x/y:1"):
        response = await client.post(
            "/v1/deployments", json={"app_name": "denied", "image": image}, headers=user.headers
        )
        assert response.status == 403, image
        body = await response.json()
        assert body["error"]["code"] == "image_not_allowed"
        assert REGISTRY in body["error"]["message"]
        assert body["error"]["details"]["allowlist"] == [REGISTRY, "127.0.0.1:"]


async def test_a_slow_pull_shows_progress_in_status_and_on_the_websocket(
    cluster: Cluster,
) -> None:
    client, user, _ = cluster
    socket = await client.ws_connect("/v1/ws/notifications", headers=user.headers)
    with private_registry() as registry:
        repository = f"{registry.address}/layered"
        await asyncio.to_thread(build_layered_image, repository, 3, 2 * 2**20)
        try:
            with docker_engine() as engine:
                await asyncio.to_thread(push, engine, repository, "latest", None)
        finally:
            await asyncio.to_thread(remove_local_copies, repository)
        proxy = RegistryProxy(registry, bytes_per_second=2 * 2**20)
        port = await proxy.start()
        dep = ""
        try:
            dep = await deploy(client, user, f"127.0.0.1:{port}/layered:latest")

            async def pulling() -> Any:
                found = await status(client, user, dep)
                pulls = [i["pull"] for i in found["instances"] if i["state"] == "pulling"]
                return pulls[0] if pulls and pulls[0]["bytes_total"] else None

            progress = await eventually(pulling, timeout=30, interval=0.05)
            assert progress["image"] == f"127.0.0.1:{port}/layered:latest"
            assert progress["layers_total"] >= 3
            await until_status(client, user, dep, "running")
            seen = set()
            async with asyncio.timeout(10):
                while "deployment_pulled" not in seen:
                    event = await socket.receive_json()
                    seen.add(event.get("type"))
            assert "deployment_pull_progress" in seen
        finally:
            await socket.close()
            await proxy.close()
            if dep:  # its container holds the image
                await client.delete(f"/v1/deployments/{dep}", headers=user.headers)
            await asyncio.to_thread(remove_local_copies, f"127.0.0.1:{port}/layered")


async def test_a_failed_pull_of_an_update_leaves_the_replica_running(cluster: Cluster) -> None:
    client, user, _ = cluster
    reported_later(client)
    with pushed_copy() as image:
        dep = await deploy(client, user, image, registry_auth=auth())
        await until_status(client, user, dep, "running")
        [before] = labelled_containers({"encedeus.deployment": dep}, running_only=True)
        await expect_json(
            await client.put(
                f"/v1/deployments/{dep}",
                json={"image": image.rpartition(":")[0] + ":no-such-tag"},
                headers=user.headers,
            )
        )
        failed = await until_status(client, user, dep, "failed")
        assert failed["error_code"] == "image_not_found"
        [after] = labelled_containers({"encedeus.deployment": dep}, running_only=True)
        assert after.id == before.id
        assert (await status(client, user, dep))["replicas"]["ready"] == 1


async def test_cli_deploy_pulls_with_credentials_and_shows_a_progress_bar(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    client, user, _ = cluster

    async def node_ready() -> bool:
        nodes = await expect_json(await client.get("/v1/nodes", headers=user.headers))
        return all(n["status"] == "ready" and n["last_seen"] for n in nodes["nodes"])

    await eventually(node_ready)  # the CLI gives up on a deployment no node can take yet
    monkeypatch.setenv("ENCEDEUS_URL", str(client.make_url("")).rstrip("/"))
    monkeypatch.setenv("ENCEDEUS_TOKEN", user.access_token)
    monkeypatch.setenv("ENCEDEUS_REGISTRY_PASSWORD", REGISTRY_PASSWORD)
    with pushed_copy() as image:
        deployed = await asyncio.to_thread(
            main, ["deploy", image, "--name", "cli-pulled", "--registry-user", REGISTRY_USER,
                   "--command", CLI_LOOP]
        )  # fmt: skip
        assert deployed == 0, capsys.readouterr()
        assert "Running." in capsys.readouterr().out
    with private_registry() as registry:
        repository = f"{registry.address}/layered"
        await asyncio.to_thread(build_layered_image, repository, 3, 2 * 2**20)
        try:
            with docker_engine() as engine:
                await asyncio.to_thread(push, engine, repository, "latest", None)
        finally:
            await asyncio.to_thread(remove_local_copies, repository)
        proxy = RegistryProxy(registry, bytes_per_second=2 * 2**20)
        port = await proxy.start()
        try:
            deployed = await asyncio.to_thread(
                main, ["deploy", f"127.0.0.1:{port}/layered:latest", "--name", "cli-slow",
                       "--command", CLI_LOOP]
            )  # fmt: skip
            shown = capsys.readouterr().out
            assert deployed == 0, shown
            assert f"pulling 127.0.0.1:{port}/layered:latest [" in shown, shown
            assert "Running." in shown
        finally:
            await proxy.close()
            for found in await details_list(client, user):
                await client.delete(f"/v1/deployments/{found}", headers=user.headers)
            await asyncio.to_thread(remove_local_copies, f"127.0.0.1:{port}/layered")


async def details_list(client: TestClient[Any, Any], user: Account) -> list[str]:
    listed = await expect_json(await client.get("/v1/deployments", headers=user.headers))
    return [str(d["id"]) for d in listed["deployments"]]


async def test_fixing_the_credentials_recovers_at_once(cluster: Cluster) -> None:
    client, user, _ = cluster
    reported_later(client)
    with pushed_copy() as image:
        dep = await deploy(client, user, image, registry_auth=auth("wrong-password"))
        assert (await until_status(client, user, dep, "failed"))["error_code"] == "registry_denied"
        await expect_json(
            await client.put(
                f"/v1/deployments/{dep}", json={"registry_auth": auth()}, headers=user.headers
            )
        )
        # A new generation: not held back by the failed pull's back-off (cap 2 s here,
        # 60 s by default).
        running = await until_status(client, user, dep, "running")
        assert running["generation"] == 2
        removed = await expect_json(
            await client.put(
                f"/v1/deployments/{dep}", json={"remove_registry_auth": True}, headers=user.headers
            )
        )
        assert removed["id"] == dep
        assert (await details(client, user, dep))["registry_auth"] is None


async def _create(client: TestClient[Any, Any], user: Account, image: str, **fields: Any) -> Any:
    body = {"app_name": f"c{len(image) % 7}x", "image": image, "command": LOOP, **fields}
    return await client.post("/v1/deployments", json=body, headers=user.headers)


async def test_unusable_images_are_422_at_create_when_a_node_can_tell(cluster: Cluster) -> None:
    client, user, _ = cluster
    await node_ready(client)
    with pushed_copy() as image:
        repository = image.rpartition(":")[0]
        unknown = await _create(client, user, f"{repository}:no-such-tag", registry_auth=auth())
        assert (unknown.status, await error_code(unknown)) == (422, "image_not_found")
        denied = await _create(client, user, image, registry_auth=auth("wrong-password"))
        body = await denied.json()
        assert (denied.status, body["error"]["code"]) == (422, "registry_denied")
        assert "wrong-password" not in json.dumps(body)
        # Cached per image and credentials: the right password is asked about anew.
        assert client.app[IMAGE_CHECKS].cached(ImageAccess(image, REGISTRY_USER, "x")) is None
        # No replicas: nothing is asked, the deployment is accepted.
        idle = await _create(client, user, f"{repository}:no-such-tag", replicas=0)
        assert idle.status == 201
        # pull_policy "never": no registry is involved, the node says so later.
        local = await _create(
            client, user, f"{repository}:no-such-tag", app_name="local", pull_policy="never"
        )
        assert local.status == 201
        dep = await deploy(client, user, image, registry_auth=auth())
        changed = await client.put(
            f"/v1/deployments/{dep}", json={"image": f"{repository}:gone"}, headers=user.headers
        )
        assert (changed.status, await error_code(changed)) == (422, "image_not_found")
        assert (await details(client, user, dep))["image"] == image


async def test_an_unreachable_registry_is_accepted_and_reported_later(cluster: Cluster) -> None:
    client, user, _ = cluster
    await node_ready(client)
    created = await _create(client, user, "127.0.0.1:1/nowhere/app:v1")
    assert created.status == 201
    dep = str((await created.json())["id"])

    async def reported() -> Any:
        shown = await details(client, user, dep)
        return shown if shown["error_code"] else None

    shown = await eventually(reported, timeout=30)
    assert shown["error_code"] == "registry_unreachable", shown
