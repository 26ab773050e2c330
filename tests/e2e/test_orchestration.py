"""Orchestration across processes: one control plane and two agents on loopback,
driving the real dockerd. Scenarios run in order on one cluster: tasks first (no
deployment is moved about when a node goes down then), deployments after."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from controlplane.client.api import ApiClient, UploadFile
from tests.agent.sftp.conftest import run_sftp
from tests.conftest import TEST_IMAGE
from tests.docker_support import remove_labelled_containers
from tests.e2e.cluster_support import (
    PASSWORD,
    Cluster,
    eventually,
    session_containers,
    session_labels,
    task_logs,
    wait_finished,
    wait_healthy,
    wait_node_status,
)

pytestmark = [pytest.mark.e2e, pytest.mark.docker]
LOOP = "trap 'exit 0' TERM; while true; do echo tick; sleep 0.5; done"


@pytest.fixture(scope="module")
def cluster(two_agent_cluster: Cluster) -> Cluster:
    """The session's shared two-agent cluster (tests/e2e/conftest.py)."""
    return two_agent_cluster


async def deploy(cluster: Cluster, name: str, **fields: Any) -> str:
    body: dict[str, Any] = {
        "app_name": name,
        "image": TEST_IMAGE,
        "command": LOOP,
        "replicas": 2,
        "stop_timeout": 2,
    }
    body.update(fields)
    created = await cluster.request("POST", "/v1/deployments", 201, json=body)
    deployment_id: str = created["id"]
    return deployment_id


async def status(cluster: Cluster, deployment_id: str) -> Any:
    return await cluster.request("GET", f"/v1/deployments/{deployment_id}/status")


async def all_ready(cluster: Cluster, deployment_id: str, count: int, timeout: float = 30) -> Any:
    async def check() -> Any:
        current = await status(cluster, deployment_id)
        return current if current["replicas"]["ready"] == count else None

    return await eventually(check, timeout=timeout)


def copies(deployment_id: str) -> Counter[str]:
    """Running containers per replica id, across every node."""
    found = session_containers({"encedeus.deployment": deployment_id})
    return Counter(c.labels["encedeus.replica"] for c in found)


@pytest.fixture(scope="module")
def admin(cluster: Cluster) -> ApiClient:
    return ApiClient(cluster.url, cluster.token)


def start_task(admin: ApiClient, command: str, files: list[UploadFile] | None = None) -> str:
    """Create a task and start it (it is placed then); its id."""
    spec = {"image": TEST_IMAGE, "command": command}
    created = admin.upload("/v1/tasks", {"task": json.dumps(spec)}, files or [])
    admin.call("POST", f"/v1/tasks/{created['id']}")
    task_id: str = created["id"]
    return task_id


def run_task(admin: ApiClient, command: str, files: list[UploadFile] | None = None) -> Any:
    """Create and start a task; its status once it has ended."""
    return wait_finished(admin, start_task(admin, command, files), timeout=30)


def moments(status: Any, *keys: str) -> list[datetime]:
    """The status's timestamps named by `keys`, all of them set."""
    return [datetime.fromisoformat(status[key]) for key in keys]


def node_that_ran(cluster: Cluster, status: Any) -> str:
    """The name of the node that ran the task: the API's node id must be the one the
    agent process of that node stamped on the task's container, and that agent runs."""
    found = session_containers({"encedeus.task": status["id"]}, running=False)
    assert len(found) == 1, found
    assert found[0].labels["encedeus.node"] == status["node_id"]
    name = next(n for n, node_id in cluster.node_ids.items() if node_id == status["node_id"])
    process = cluster.agents[name].process
    assert process is not None
    assert process.poll() is None
    return name


def test_task_input_lands_in_its_workdir_and_logs_outlive_its_container(
    cluster: Cluster, admin: ApiClient
) -> None:
    upload = UploadFile("files", "input.txt", b"from the upload\n")
    status = run_task(admin, "cat input.txt; pwd; echo done", [upload])
    assert status["status"] == "Succeeded", status
    assert status["exit_code"] == 0
    started, finished = moments(status, "started_at", "finished_at")
    assert started <= finished
    node_that_ran(cluster, status)
    output = task_logs(admin, status["id"])
    assert output.splitlines() == ["from the upload", "/data", "done"]

    remove_labelled_containers(session_labels({"encedeus.task": status["id"]}))
    assert session_containers({"encedeus.task": status["id"]}, running=False) == []
    assert task_logs(admin, status["id"]) == output


def test_task_failure_reports_its_exit_code_and_times(cluster: Cluster, admin: ApiClient) -> None:
    status = run_task(admin, "echo bad >&2; exit 7")
    assert status["status"] == "Failed", status
    assert status["exit_code"] == 7
    assert status["oom_killed"] is False
    created, started, finished = moments(status, "created_at", "started_at", "finished_at")
    assert created <= started <= finished
    node_that_ran(cluster, status)
    assert task_logs(admin, status["id"]) == "bad\n"


async def test_task_started_while_a_node_is_down_runs_on_the_live_one(
    cluster: Cluster, admin: ApiClient
) -> None:
    first = await asyncio.to_thread(run_task, admin, "echo first")
    preferred = node_that_ran(cluster, first)
    (other,) = set(cluster.agents) - {preferred}
    # Frozen rather than killed (test_lost_node_... covers a crash): silent past the
    # grace period it is down all the same, and it is back without a reconnect.
    cluster.agents[preferred].freeze()
    try:
        await wait_node_status(cluster, preferred, "down", timeout=20)
        # The ended task's logs are the control plane's: its node being gone is no matter.
        assert await asyncio.to_thread(task_logs, admin, first["id"]) == "first\n"
        second = await asyncio.to_thread(run_task, admin, "echo second")
    finally:
        cluster.agents[preferred].thaw()
    assert second["status"] == "Succeeded", second
    assert node_that_ran(cluster, second) == other
    await wait_node_status(cluster, preferred, "ready")


async def test_replicas_are_placed_across_both_nodes(cluster: Cluster) -> None:
    dep = await deploy(cluster, "spread", replicas=4)
    current = await all_ready(cluster, dep, 4)
    nodes = Counter(i["node_id"] for i in current["instances"])
    assert set(nodes) == set(cluster.node_ids.values())
    assert sorted(nodes.values()) == [2, 2]
    counts = copies(dep)
    assert len(counts) == 4
    assert set(counts.values()) == {1}


async def test_rolling_update_keeps_replicas_available(cluster: Cluster) -> None:
    dep = await deploy(cluster, "rolling", replicas=3)
    await all_ready(cluster, dep, 3)
    await cluster.request("PUT", f"/v1/deployments/{dep}", json={"env_vars": {"V": "2"}})
    lowest = 3

    async def rolled() -> bool:
        nonlocal lowest
        current = await status(cluster, dep)
        lowest = min(lowest, current["replicas"]["ready"])
        gens = {i["generation"] for i in current["instances"] if i["ready"]}
        return current["replicas"]["ready"] == 3 and gens == {2}

    await eventually(rolled, timeout=40, interval=0.1)
    assert lowest >= 2, "more than one replica was down at a time"
    assert set(copies(dep).values()) == {1}


async def test_crash_loop_backs_off(cluster: Cluster) -> None:
    dep = await deploy(cluster, "crashy", command="exit 7", replicas=1)

    async def backing_off() -> Any:
        current = await status(cluster, dep)
        return current if current["restart_count"] >= 3 and current["backoff_until"] else None

    current = await eventually(backing_off, timeout=40)
    assert current["instances"][0]["exit_code"] == 7

    async def failed() -> bool:
        detail = await cluster.request("GET", f"/v1/deployments/{dep}")
        return bool(detail["status"] == "failed")

    await eventually(failed, timeout=10)
    await cluster.request("DELETE", f"/v1/deployments/{dep}")


async def test_control_plane_restart_loses_nothing(cluster: Cluster) -> None:
    dep = await deploy(cluster, "durable", replicas=2)
    before = await all_ready(cluster, dep, 2)
    cluster.controlplane.kill()
    cluster.controlplane.start()
    await wait_healthy(cluster)
    after = await all_ready(cluster, dep, 2)
    assert {i["id"] for i in after["instances"]} == {i["id"] for i in before["instances"]}
    # Same containers, not replacements: the start times did not change.
    assert {i["started_at"] for i in after["instances"]} == {
        i["started_at"] for i in before["instances"]
    }
    await asyncio.sleep(1.0)  # a few reconcile passes
    assert set(copies(dep).values()) == {1}
    assert len(copies(dep)) == 2


async def test_lost_node_work_moves_and_stale_copies_go(cluster: Cluster) -> None:
    dep = await deploy(cluster, "failover", replicas=4)
    current = await all_ready(cluster, dep, 4)
    node_b = cluster.node_ids["node-b"]
    on_b = {i["id"] for i in current["instances"] if i["node_id"] == node_b}
    assert on_b
    cluster.agents["node-b"].kill()  # its containers keep running: stale copies

    async def moved() -> bool:
        now = await status(cluster, dep)
        return now["replicas"]["ready"] == 4 and all(
            i["node_id"] == cluster.node_ids["node-a"] for i in now["instances"]
        )

    await eventually(moved, timeout=60)
    node = await cluster.request("GET", f"/v1/nodes/{node_b}")
    assert node["status"] == "down"

    cluster.agents["node-b"].start()  # same identity file: no new enrolment

    async def single_copies() -> bool:
        back = await cluster.request("GET", f"/v1/nodes/{node_b}")
        counts = copies(dep)
        return back["status"] == "ready" and len(counts) == 4 and set(counts.values()) == {1}

    await eventually(single_copies, timeout=30)


async def _slots_kept_their_volumes(
    cluster: Cluster, dep: str, volumes: dict[int, str], moved: dict[int, str], cwd: Path
) -> None:
    after = await status(cluster, dep)
    assert {i["ordinal"]: i["volume_id"] for i in after["instances"]} == volumes
    node_a = cluster.node_ids["node-a"]
    for instance in after["instances"]:
        if instance["ordinal"] in moved:
            assert instance["id"] == moved[instance["ordinal"]]  # moved, not replaced ...
            volume = cluster.root / "node-a" / "volumes" / instance["volume_id"]
            assert volume.is_dir()  # ... with the slot's volume
    ordinal = min(moved)
    node = await cluster.request("GET", f"/v1/nodes/{node_a}")
    port = int(node["sftp_address"].rpartition(":")[2])
    login = f"admin.{volumes[ordinal][:8]}"  # the login it had on node-b
    result = await run_sftp(port, login, "ls\n", password=PASSWORD, cwd=cwd)
    assert result.returncode == 0, result.stderr


async def _no_copies_left_behind(cluster: Cluster, dep: str, moved: set[str]) -> None:
    """A drain moves the data: node-b keeps no copy of the moved slots."""
    node_b = cluster.node_ids["node-b"]
    by_node = await cluster.request("GET", f"/v1/nodes/{node_b}/orphaned-volumes")
    assert [v for v in by_node["volumes"] if v["deployment_id"] == dep] == []
    for volume in moved:
        assert not (cluster.root / "node-b" / "volumes" / volume).exists()
    by_deployment = await cluster.request("GET", f"/v1/deployments/{dep}/orphaned-volumes")
    assert by_deployment == {"volumes": [], "unreachable_nodes": []}


async def test_draining_moves_work_off_one_replica_at_a_time(
    cluster: Cluster, tmp_path: Path
) -> None:
    """... with its data: each slot keeps its replica and volume (data directory name,
    SFTP login) and node-b keeps no copy."""
    dep = await deploy(cluster, "drained", replicas=4)
    before = await all_ready(cluster, dep, 4)
    volumes = {i["ordinal"]: i["volume_id"] for i in before["instances"]}
    on_b = {i["ordinal"]: i["id"] for i in before["instances"]
            if i["node_id"] == cluster.node_ids["node-b"]}  # fmt: skip
    assert on_b, "the scenario needs a replica on node-b"
    node_b = cluster.node_ids["node-b"]
    drained = await cluster.request("POST", f"/v1/nodes/{node_b}/drain")
    assert drained["status"] == "draining"
    lowest = 4

    async def moved_off() -> bool:
        nonlocal lowest
        now = await status(cluster, dep)
        lowest = min(lowest, now["replicas"]["ready"])
        return now["replicas"]["ready"] == 4 and all(
            i["node_id"] == cluster.node_ids["node-a"] for i in now["instances"]
        )

    await eventually(moved_off, timeout=90, interval=0.1)  # one slot at a time, with data
    assert lowest >= 3, "more than one replica was down at a time"
    await _slots_kept_their_volumes(cluster, dep, volumes, on_b, tmp_path)

    async def old_copies_gone() -> bool:
        return len(copies(dep)) == 4

    await eventually(old_copies_gone, timeout=20)
    await _no_copies_left_behind(cluster, dep, {volumes[o] for o in on_b})
    placed = await deploy(cluster, "after-drain", replicas=2)
    after = await all_ready(cluster, placed, 2)
    assert {i["node_id"] for i in after["instances"]} == {cluster.node_ids["node-a"]}
    await cluster.request("DELETE", f"/v1/nodes/{node_b}/drain")  # the cluster is shared
