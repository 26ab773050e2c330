"""One contract for :class:`AgentClient`, run against the fake the reconciler harness
uses (:class:`FakeAgent`) and against the real thing (:class:`GrpcAgentClient` to an
in-process Skyhook agent on the local dockerd). A fake that drifts from the agent
fails here, not silently in the scenarios built on it."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path

import pytest

from controlplane.agents.client import AgentClient, AgentError, GrpcAgentClient
from protos import agent_pb2 as pb
from tests.agent.conftest import SECRET, agent_in_background, make_config, spec
from tests.controlplane.fake_agent import FakeAgent

LABEL = "encedeus.contract"


@pytest.fixture(params=["fake", pytest.param("real", marks=pytest.mark.docker)])
async def client(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AgentClient]:
    """The same Protocol, fake or real."""
    if request.param == "fake":
        yield FakeAgent("node-fake")
        return
    config = make_config(tmp_path / "skyhook", f"node-{uuid.uuid4().hex[:8]}")
    async with agent_in_background(config) as agent:
        real = GrpcAgentClient(f"127.0.0.1:{agent.grpc.port}", SECRET)
        try:
            yield real
        finally:
            await real.close()


def _server(label: str = "a") -> pb.ServerSpec:
    return spec("sleep 60", labels={LABEL: label}, stop=pb.StopPolicy(timeout_seconds=1))


async def _refusal(call: Awaitable[object]) -> str:
    try:
        await call
    except AgentError as exc:
        return exc.code
    raise AssertionError("the call did not fail")


async def test_created_servers_run_and_carry_their_labels(client: AgentClient) -> None:
    running = await client.create_server(_server(), start=True)
    idle = await client.create_server(_server(), start=False)
    assert running.status.state == pb.SERVER_STATE_RUNNING
    assert running.status.labels[LABEL] == "a"
    assert running.status.container_id
    assert idle.status.state == pb.SERVER_STATE_OFFLINE
    assert not idle.status.exited
    assert (await client.get_server(running.spec.id)).status.id == running.spec.id


async def test_an_id_is_taken_once(client: AgentClient) -> None:
    server = _server()
    await client.create_server(server, start=False)
    assert await _refusal(client.create_server(server, start=False)) == "already_exists"


async def test_stop_then_start(client: AgentClient) -> None:
    server = (await client.create_server(_server(), start=True)).spec
    stopped = await client.stop_server(server.id)
    assert stopped.status.state == pb.SERVER_STATE_OFFLINE
    started = await client.start_server(server.id)
    assert started.status.state in (pb.SERVER_STATE_RUNNING, pb.SERVER_STATE_STARTING)


async def test_removed_servers_are_gone(client: AgentClient) -> None:
    server = (await client.create_server(_server(), start=True)).spec
    assert await client.remove_server(server.id, delete_data=True)
    assert await _refusal(client.get_server(server.id)) == "not_found"
    assert await _refusal(client.start_server("no-such-server")) == "not_found"


async def test_servers_are_listed_by_label(client: AgentClient) -> None:
    a = (await client.create_server(_server("a"), start=False)).spec
    await client.create_server(_server("b"), start=False)
    listed = await client.list_servers({LABEL: "a"})
    assert [s.spec.id for s in listed] == [a.id]


async def test_the_watch_stream_opens_with_a_heartbeat_of_every_server(
    client: AgentClient,
) -> None:
    server = (await client.create_server(_server(), start=True)).spec
    events = client.watch(100)
    try:
        async for event in events:
            if event.WhichOneof("event") == "heartbeat":
                ids = {s.id for s in event.heartbeat.servers}
                assert server.id in ids
                break
    finally:
        await events.aclose()  # type: ignore[attr-defined]


async def test_heartbeats_leave_out_servers_until_one_changes(client: AgentClient) -> None:
    server = (await client.create_server(_server(), start=True)).spec
    events = client.watch(100)
    stopped = False
    try:
        async with asyncio.timeout(20):
            async for event in events:
                if event.WhichOneof("event") != "heartbeat":
                    continue
                beat = event.heartbeat
                if beat.servers_unchanged:
                    assert not beat.servers
                    if not stopped:
                        await client.stop_server(server.id)
                        stopped = True
                    continue
                shown = {s.id: s.state for s in beat.servers}
                assert server.id in shown  # the stream's first heartbeat shows them
                if stopped and shown[server.id] == pb.SERVER_STATE_OFFLINE:
                    break
    finally:
        await events.aclose()  # type: ignore[attr-defined]


async def test_node_info_names_the_port_range(client: AgentClient) -> None:
    info = await client.get_node_info()
    assert (info.port_range_start, info.port_range_end) == (30000, 30999)


async def test_backups_are_taken_restored_and_deleted_in_their_repository(
    client: AgentClient,
) -> None:
    server = _server()
    server.files.append(pb.InputFile(path="world.dat", content=b"the world"))
    created = await client.create_server(server, start=True)
    backup = await client.create_backup(
        pb.CreateBackupRequest(server_id=created.spec.id, backup_id="b1")
    )
    assert backup.snapshot_id
    assert backup.repository.startswith("node:")
    assert backup.checksum.startswith("sha256:")
    elsewhere = pb.RestoreBackupRequest(
        server_id=created.spec.id, snapshot_id=backup.snapshot_id, repository="node:other"
    )
    assert await _refusal(client.restore_backup(elsewhere)) == "failed_precondition"
    here = pb.RestoreBackupRequest(
        server_id=created.spec.id, snapshot_id=backup.snapshot_id, repository=backup.repository
    )
    assert (await client.restore_backup(here)).restarted
    gone = pb.DeleteBackupRequest(snapshot_id=backup.snapshot_id, repository="node:other")
    assert await _refusal(client.delete_backup(gone)) == "failed_precondition"
    mine = pb.DeleteBackupRequest(snapshot_id=backup.snapshot_id, repository=backup.repository)
    assert await client.delete_backup(mine)
    unknown = pb.CreateBackupRequest(server_id="t-unknown", backup_id="b2")
    assert await _refusal(client.create_backup(unknown)) == "not_found"


async def test_a_volume_in_use_is_kept_and_a_free_one_deleted_once(client: AgentClient) -> None:
    server = _server()
    server.volume_id = f"v{server.id}"
    await client.create_server(server, start=False)
    assert await _refusal(client.delete_volume(server.volume_id)) == "failed_precondition"
    await client.remove_server(server.id)
    assert server.volume_id in {v.id for v in (await client.get_node_info()).volumes}
    assert await client.delete_volume(server.volume_id)
    assert not await client.delete_volume(server.volume_id)
    assert server.volume_id not in {v.id for v in (await client.get_node_info()).volumes}
