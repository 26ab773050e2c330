"""Lifecycle over gRPC against the real dockerd: create, start, stop by command, by
signal, by timeout-kill, crash, restart and remove, all seen on the Watch stream."""

from __future__ import annotations

import asyncio
import time

import docker
import pytest

from protos import agent_pb2 as pb
from protos import agent_pb2_grpc as pb_grpc
from tests.agent.conftest import AUTH, ECHO, spec, wait_for_event

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("no_blocking_calls")]


async def test_stop_with_command_is_a_requested_exit(
    stub: pb_grpc.AgentAsyncStub,
) -> None:
    watch = stub.Watch(pb.WatchRequest(heartbeat_interval_ms=200), metadata=AUTH)
    events = watch.__aiter__()
    s = spec(ECHO, stop=pb.StopPolicy(command="stop", timeout_seconds=10))
    created = await stub.CreateServer(pb.CreateServerRequest(spec=s, start=True), metadata=AUTH)
    assert created.status.state == pb.SERVER_STATE_RUNNING
    assert created.status.labels["encedeus.managed"] == "true"
    assert created.status.labels["encedeus.server"] == s.id
    await wait_for_event(events, s.id, pb.LIFECYCLE_KIND_STARTED)
    began = time.monotonic()
    stopped = await stub.StopServer(pb.StopServerRequest(id=s.id), metadata=AUTH)
    assert time.monotonic() - began < 5  # the command, not the kill timer, ended it
    assert stopped.status.state == pb.SERVER_STATE_OFFLINE
    assert (stopped.status.exited, stopped.status.exit_code) == (True, 0)
    exited = await wait_for_event(events, s.id, pb.LIFECYCLE_KIND_EXITED)
    assert (exited.requested, exited.exit_code, exited.oom_killed) == (True, 0, False)
    watch.cancel()


async def test_stop_with_signal(stub: pb_grpc.AgentAsyncStub) -> None:
    trap = 'trap "exit 0" TERM; while true; do sleep 0.1; done'
    s = spec(trap, stop=pb.StopPolicy(signal="SIGTERM", timeout_seconds=10))
    await stub.CreateServer(pb.CreateServerRequest(spec=s, start=True), metadata=AUTH)
    began = time.monotonic()
    stopped = await stub.StopServer(pb.StopServerRequest(id=s.id), metadata=AUTH)
    assert time.monotonic() - began < 5
    assert stopped.status.exit_code == 0


async def test_stop_kills_after_the_timeout(stub: pb_grpc.AgentAsyncStub) -> None:
    # PID 1 without a handler ignores SIGTERM: only the kill after the timeout ends it.
    s = spec("while true; do sleep 1; done", stop=pb.StopPolicy(timeout_seconds=1))
    await stub.CreateServer(pb.CreateServerRequest(spec=s, start=True), metadata=AUTH)
    began = time.monotonic()
    stopped = await stub.StopServer(pb.StopServerRequest(id=s.id), metadata=AUTH)
    took = time.monotonic() - began
    assert 0.9 <= took < 6
    assert stopped.status.exit_code == 137


async def test_crash_is_reported_as_not_requested(stub: pb_grpc.AgentAsyncStub) -> None:
    watch = stub.Watch(pb.WatchRequest(), metadata=AUTH)
    events = watch.__aiter__()
    s = spec("sleep 0.3; exit 3")
    await stub.CreateServer(pb.CreateServerRequest(spec=s, start=True), metadata=AUTH)
    exited = await wait_for_event(events, s.id, pb.LIFECYCLE_KIND_EXITED)
    assert (exited.requested, exited.exit_code, exited.oom_killed) == (False, 3, False)
    assert exited.status.state == pb.SERVER_STATE_OFFLINE
    watch.cancel()


async def test_restart_kill_and_remove(stub: pb_grpc.AgentAsyncStub, tmp_path: object) -> None:
    s = spec(ECHO, stop=pb.StopPolicy(command="stop"))
    s.files.add(path="config/server.properties", content=b"motd=hi\n")
    first = await stub.CreateServer(pb.CreateServerRequest(spec=s, start=True), metadata=AUTH)
    restarted = await stub.RestartServer(pb.RestartServerRequest(id=s.id), metadata=AUTH)
    assert restarted.status.container_id == first.status.container_id
    assert restarted.status.started_at_ms > first.status.started_at_ms
    assert restarted.status.state == pb.SERVER_STATE_RUNNING
    killed = await stub.KillServer(pb.KillServerRequest(id=s.id), metadata=AUTH)
    assert (killed.status.state, killed.status.exit_code) == (pb.SERVER_STATE_OFFLINE, 137)
    listed = await stub.ListServers(pb.ListServersRequest(), metadata=AUTH)
    assert [x.spec.id for x in listed.servers] == [s.id]
    removed = await stub.RemoveServer(
        pb.RemoveServerRequest(id=s.id, delete_data=True), metadata=AUTH
    )
    assert removed.removed
    listed = await stub.ListServers(pb.ListServersRequest(), metadata=AUTH)
    assert list(listed.servers) == []


def remove_behind_the_agents_back(container_id: str) -> None:
    client = docker.from_env()
    try:
        client.api.remove_container(container_id, force=True)
    finally:
        client.close()


async def test_container_removed_outside_the_agent(stub: pb_grpc.AgentAsyncStub) -> None:
    watch = stub.Watch(pb.WatchRequest(), metadata=AUTH)
    events = watch.__aiter__()
    s = spec(ECHO)
    created = await stub.CreateServer(pb.CreateServerRequest(spec=s, start=True), metadata=AUTH)
    await asyncio.to_thread(remove_behind_the_agents_back, created.status.container_id)
    exited = await wait_for_event(events, s.id, pb.LIFECYCLE_KIND_EXITED)
    assert not exited.requested
    await wait_for_event(events, s.id, pb.LIFECYCLE_KIND_REMOVED)
    listed = await stub.ListServers(pb.ListServersRequest(), metadata=AUTH)
    assert list(listed.servers) == []
    watch.cancel()
