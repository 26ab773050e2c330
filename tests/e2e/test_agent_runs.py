"""The agent's end-to-end checks, once for each way Skyhook runs: as a `skyhook`
process, and as a container of its own image (Dockerfile.agent, built on a Debian
base made locally) driving the host's dockerd through the mounted socket, with its
data directory bind-mounted at the same path — seed 000's "non volatile docker
container", proven.

Through the control plane: a server is created and started, its console answers over
the agent's WebSocket, its stats are real, SFTP moves files both ways (the real
OpenSSH client), what the server writes lands in the host's data directory, and the
agent restarts without restarting the server."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.agent.sftp.conftest import requires_sftp_client, run_sftp
from tests.agent.ws_support import next_frame
from tests.agent_image_support import agent_image
from tests.conftest import TEST_IMAGE
from tests.docker_support import labelled_containers
from tests.e2e.cluster_support import (
    PASSWORD,
    AgentRunner,
    Cluster,
    add_agent,
    eventually,
    remove_session_containers,
    sign_in_admin,
    start_controlplane,
    wait_healthy,
    wait_node_status,
)

pytestmark = [pytest.mark.e2e, pytest.mark.docker, requires_sftp_client]
SERVER = 'echo booted; while read -r l; do echo "$l" > /data/last; echo "got $l"; done'
PORT_RANGES: dict[str, tuple[int, int]] = {"process": (31820, 31839), "container": (31840, 31859)}


@pytest.fixture(scope="module", params=["process", "container"])
def cluster(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    runner: AgentRunner = request.param
    if runner == "container":
        agent_image()  # built (or found by its content hash) before anything starts
    running = start_controlplane(tmp_path_factory.mktemp(f"agent-{runner}"))

    async def assemble() -> None:
        await wait_healthy(running)
        await sign_in_admin(running)
        await add_agent(running, "node", PORT_RANGES[runner], runner=runner)

    try:
        asyncio.run(assemble())
        yield running
    finally:
        for agent in running.agents.values():
            agent.stop()
        running.controlplane.stop()
        remove_session_containers()


@pytest.fixture(scope="module")
def server(cluster: Cluster) -> dict[str, Any]:
    """The deployment's running replica (its status instance) and the deployment id."""

    async def deploy() -> dict[str, Any]:
        body = {"app_name": "agent-runs", "image": TEST_IMAGE, "command": SERVER}
        created = await cluster.request("POST", "/v1/deployments", 201, json=body)

        async def ready() -> Any:
            status = await cluster.request("GET", f"/v1/deployments/{created['id']}/status")
            return status if status["replicas"]["ready"] == 1 else None

        [instance] = (await eventually(ready, timeout=60))["instances"]
        return {**instance, "deployment_id": created["id"]}

    return asyncio.run(deploy())


async def test_console_and_stats_through_the_control_plane(
    cluster: Cluster, server: dict[str, Any]
) -> None:
    access = await cluster.request("GET", f"/v1/deployments/{server['deployment_id']}/console")
    async with aiohttp.ClientSession() as http, http.ws_connect(access["url"]) as ws:
        await ws.send_json({"event": "auth", "args": [access["token"]]})
        await next_frame(ws, "auth success")
        while (line := await next_frame(ws, "console output")) != ["booted"]:
            assert line[0].startswith("[skyhook]")  # the agent's own notes around it
        await ws.send_json({"event": "send command", "args": ["hello"]})
        assert await next_frame(ws, "console output") == ["got hello"]
        await ws.send_json({"event": "send stats", "args": []})
        stats = json.loads((await next_frame(ws, "stats"))[0])
    assert stats["state"] == "running"
    assert stats["memory_bytes"] > 0  # read from the host's cgroup files
    # The data directory is the same path for the agent, dockerd and the host.
    volume = cluster.root / "node" / "volumes" / server["volume_id"]
    assert (volume / "last").read_text() == "hello\n"


async def test_sftp_moves_files_both_ways(
    cluster: Cluster, server: dict[str, Any], tmp_path: Path
) -> None:
    node = await cluster.request("GET", f"/v1/nodes/{cluster.node_ids['node']}")
    port = int(node["sftp_address"].rsplit(":", 1)[1])
    login = f"admin.{server['volume_id'][:8]}"
    (tmp_path / "upload.txt").write_text("from-sftp\n")
    [container] = labelled_containers({"encedeus.deployment": server["deployment_id"]})
    # A file the container wrote (not left to another test: this one runs alone too).
    written = await asyncio.to_thread(container.exec_run, ["sh", "-c", "echo hello > /data/last"])
    assert written.exit_code == 0
    result = await run_sftp(port, login, "put upload.txt\nget last\n", password=PASSWORD,
                            cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "last").read_text() == "hello\n"
    exit_code, output = await asyncio.to_thread(container.exec_run, ["cat", "/data/upload.txt"])
    assert (exit_code, output) == (0, b"from-sftp\n")


async def test_the_agent_restarts_and_its_server_keeps_running(
    cluster: Cluster, server: dict[str, Any]
) -> None:
    labels = {"encedeus.deployment": server["deployment_id"]}
    [before] = await asyncio.to_thread(labelled_containers, labels, running_only=True)
    agent = cluster.agents["node"]
    await asyncio.to_thread(agent.stop)
    await asyncio.to_thread(agent.start)
    await wait_node_status(cluster, "node", "ready")
    [after] = await asyncio.to_thread(labelled_containers, labels, running_only=True)
    assert after.id == before.id
    assert after.attrs["State"]["StartedAt"] == before.attrs["State"]["StartedAt"]
    volume = cluster.root / "node" / "volumes" / server["volume_id"]

    async def answered() -> bool:
        # 409 not_running (an AssertionError here) until the control plane hears the
        # re-attached server from the restarted agent.
        await cluster.request("POST", f"/v1/deployments/{server['deployment_id']}/command",
                              json={"command": "again"})  # fmt: skip
        await asyncio.sleep(0.2)
        return bool((volume / "last").read_text() == "again\n")

    assert await eventually(answered, timeout=20)
