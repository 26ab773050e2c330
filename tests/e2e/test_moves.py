"""Moving a server's data between two live agents on the real dockerd, on the shared
two-agent cluster: files written in a server survive a drain with the same checksums
and the same SFTP login, a limited volume (a loop image) included; killing the target
agent in the middle of a transfer leaves the server running where it was, its files
intact; a slot that waits for its lost node comes back with its files, and one that
moves runs on the other agent with its last backup's files (the fleet repository)."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.agent.sftp.conftest import run_sftp
from tests.conftest import TEST_IMAGE
from tests.e2e.cluster_support import PASSWORD, Cluster, eventually, wait_node_status

pytestmark = [pytest.mark.e2e, pytest.mark.docker]
MIB = 1 << 20
# Writes its world once (the guard: a server that started empty would write a new one).
WORLD = (
    "trap 'exit 0' TERM; [ -f /data/world.dat ] ||"
    " head -c {size} /dev/urandom > /data/world.dat; mkdir -p /data/region;"
    " [ -f /data/region/r.0.0 ] || echo region > /data/region/r.0.0;"
    " touch /data/ready; while true; do sleep 0.5; done"
)


def checksums(root: Path) -> dict[str, str]:
    """sha256 of every regular file beneath `root`."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


async def _server(
    cluster: Cluster, made: list[str], name: str, size: int, **fields: Any
) -> dict[str, Any]:
    """A one-replica deployment that wrote its world (its id added to `made`); its
    running instance."""
    body = {
        "app_name": name,
        "image": TEST_IMAGE,
        "command": WORLD.format(size=size),
        "replicas": 1,
        "stop_timeout": 2,
        **fields,
    }
    created = await cluster.request("POST", "/v1/deployments", 201, json=body)
    made.append(created["id"])

    async def written() -> Any:
        status = await cluster.request("GET", f"/v1/deployments/{created['id']}/status")
        if len(status["instances"]) != 1 or not status["instances"][0]["node_id"]:
            return None
        instance = status["instances"][0]
        node = _name(cluster, instance["node_id"])
        ready = cluster.root / node / "volumes" / instance["volume_id"] / "ready"
        return {**instance, "deployment_id": created["id"]} if ready.exists() else None

    found: dict[str, Any] = await eventually(written, timeout=60)
    return found


@pytest.fixture
async def deployments(two_agent_cluster: Cluster) -> AsyncIterator[list[str]]:
    """Ids of the deployments a test made: deleted with their data afterwards (the
    cluster is shared; a later drain would move them all)."""
    made: list[str] = []
    yield made
    for deployment_id in made:
        await two_agent_cluster.request(
            "DELETE", f"/v1/deployments/{deployment_id}?delete_data=true"
        )


def _name(cluster: Cluster, node_id: str | None) -> str:
    return next(n for n, i in cluster.node_ids.items() if i == node_id)


async def _instance(cluster: Cluster, deployment_id: str) -> dict[str, Any]:
    status = await cluster.request("GET", f"/v1/deployments/{deployment_id}/status")
    instance: dict[str, Any] = status["instances"][0]
    return instance


async def _sftp_checksum(cluster: Cluster, node: str, login: str, tmp: Path) -> str:
    info = await cluster.request("GET", f"/v1/nodes/{cluster.node_ids[node]}")
    port = int(info["sftp_address"].rpartition(":")[2])
    tmp.mkdir()
    result = await run_sftp(port, login, "get world.dat\n", password=PASSWORD, cwd=tmp)
    assert result.returncode == 0, result.stderr
    return hashlib.sha256((tmp / "world.dat").read_bytes()).hexdigest()


async def test_files_survive_a_drain_with_their_checksums_and_sftp_login(
    two_agent_cluster: Cluster, deployments: list[str], tmp_path: Path
) -> None:
    cluster = two_agent_cluster
    before = await _server(
        cluster, deployments, "drained-world", 8 * MIB, resources={"disk": "64Mi"}
    )
    source = _name(cluster, before["node_id"])
    target = "node-b" if source == "node-a" else "node-a"
    volume = before["volume_id"]
    written = checksums(cluster.root / source / "volumes" / volume)
    assert "world.dat" in written
    login = f"admin.{volume[:8]}"
    on_source = await _sftp_checksum(cluster, source, login, tmp_path / "before")
    assert on_source == written["world.dat"]

    node_id = cluster.node_ids[source]
    await cluster.request("POST", f"/v1/nodes/{node_id}/drain")
    try:

        async def moved() -> Any:
            now = await _instance(cluster, before["deployment_id"])
            on_target = now["node_id"] == cluster.node_ids[target]
            return now if on_target and now["state"] == "running" else None

        after = await eventually(moved, timeout=90)
    finally:
        await cluster.request("DELETE", f"/v1/nodes/{node_id}/drain")
    assert (after["id"], after["volume_id"]) == (before["id"], volume)
    arrived = checksums(cluster.root / target / "volumes" / volume)
    assert {k: v for k, v in arrived.items() if k != "ready"} == {
        k: v for k, v in written.items() if k != "ready"
    }
    assert after["transfer"] is None
    assert await _sftp_checksum(cluster, target, login, tmp_path / "after") == on_source

    async def source_copy_gone() -> bool:
        return not (cluster.root / source / "volumes" / volume).exists()

    await eventually(source_copy_gone, timeout=20)


async def test_killing_the_target_mid_stream_leaves_the_source_running_and_intact(
    two_agent_cluster: Cluster, deployments: list[str]
) -> None:
    cluster = two_agent_cluster
    before = await _server(cluster, deployments, "interrupted", 384 * MIB)
    source = _name(cluster, before["node_id"])
    target = "node-b" if source == "node-a" else "node-a"
    volume_dir = cluster.root / source / "volumes" / before["volume_id"]
    written = checksums(volume_dir)
    staging = cluster.root / target / "transfers"
    path = f"/v1/deployments/{before['deployment_id']}/replicas/0/move"
    started = await cluster.request("POST", path, 202, json={"node_id": cluster.node_ids[target]})
    assert (started["from_node_id"], started["to_node_id"]) == (
        cluster.node_ids[source],
        cluster.node_ids[target],
    )
    async with asyncio.timeout(60):
        while not (staging.is_dir() and any(staging.iterdir())):
            await asyncio.sleep(0.01)
    cluster.agents[target].kill()  # mid-stream
    try:

        async def failed() -> Any:
            now = await _instance(cluster, before["deployment_id"])
            transfer = now["transfer"] or {}
            done = transfer.get("phase") == "failed" and now["state"] == "running"
            return now if done else None

        after = await eventually(failed, timeout=60)
        assert after["node_id"] == cluster.node_ids[source]
        assert after["id"] == before["id"]
        assert after["transfer"]["error"]
        assert checksums(volume_dir) == written
    finally:
        cluster.agents[target].start()

        async def restarted_clean() -> bool:  # the cut-off stream left nothing behind
            return not any(staging.iterdir())

        await eventually(restarted_clean, timeout=60)
        await wait_node_status(cluster, target, "ready")


async def test_a_waiting_slot_stays_with_its_lost_node_and_comes_back_with_its_files(
    two_agent_cluster: Cluster, deployments: list[str]
) -> None:
    cluster = two_agent_cluster
    before = await _server(cluster, deployments, "waits", 2 * MIB, on_node_loss="wait")
    node = _name(cluster, before["node_id"])
    volume_dir = cluster.root / node / "volumes" / before["volume_id"]
    written = checksums(volume_dir)
    cluster.agents[node].kill()
    try:
        await wait_node_status(cluster, node, "down")

        async def lost() -> Any:
            now = await _instance(cluster, before["deployment_id"])
            return now if now["state"] == "node_lost" else None

        waiting = await lost() or await eventually(lost, timeout=20)
        await asyncio.sleep(2)  # several reconcile passes: nothing moves
        now = await _instance(cluster, before["deployment_id"])
        assert (now["id"], now["node_id"], now["state"]) == (
            before["id"],
            waiting["node_id"],
            "node_lost",
        )
    finally:
        cluster.agents[node].start()
        await wait_node_status(cluster, node, "ready")

    async def back() -> Any:
        now = await _instance(cluster, before["deployment_id"])
        return now if now["state"] == "running" else None

    after = await eventually(back, timeout=60)
    assert (after["id"], after["node_id"], after["data"]) == (before["id"], before["node_id"], None)
    assert checksums(volume_dir) == written


async def _completed_backup(cluster: Cluster, deployment_id: str, name: str) -> dict[str, Any]:
    base = f"/v1/deployments/{deployment_id}/backups"
    await cluster.request("POST", base, 202, json={"name": name})

    async def completed() -> Any:
        (backup,) = (await cluster.request("GET", base))["backups"]
        assert backup["state"] in ("pending", "running", "completed"), backup
        return backup if backup["state"] == "completed" else None

    found: dict[str, Any] = await eventually(completed, timeout=60)
    return found


async def test_a_moving_slot_runs_elsewhere_with_its_last_backups_files(
    two_agent_cluster: Cluster, deployments: list[str]
) -> None:
    cluster = two_agent_cluster
    before = await _server(cluster, deployments, "restores", 2 * MIB, on_node_loss="move")
    node = _name(cluster, before["node_id"])
    other = next(n for n in cluster.node_ids if n != node)
    lost_dir = cluster.root / node / "volumes" / before["volume_id"]
    backed_up = checksums(lost_dir)
    backup = await _completed_backup(cluster, before["deployment_id"], "before-loss")
    assert backup["repository"].startswith("restic:")  # the fleet's: readable elsewhere
    (lost_dir / "after-backup.txt").write_text("written after the backup, lost with the node")
    cluster.agents[node].kill()
    try:
        await wait_node_status(cluster, node, "down")

        async def moved() -> Any:
            now = await _instance(cluster, before["deployment_id"])
            there = now["node_id"] == cluster.node_ids[other]
            return now if there and now["state"] == "running" else None

        after = await eventually(moved, timeout=90)
    finally:
        cluster.agents[node].start()
        await wait_node_status(cluster, node, "ready")
    assert (after["volume_id"], after["data"]) == (before["volume_id"], "restored")
    assert f"restored backup 'before-loss' ({backup['id'][:8]})" in after["data_note"]
    assert " old" in after["data_note"]  # how old the restored data is
    arrived = checksums(cluster.root / other / "volumes" / before["volume_id"])
    assert arrived == backed_up  # the backup's world, not a new one, nothing after it
