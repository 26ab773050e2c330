"""Bad input answers a clear status and the agent keeps serving."""

from __future__ import annotations

import asyncio

import grpc
import grpc.aio
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from agent.daemon import RunningAgent
from agent.runtime import ContainerInfo, ContainerSpec
from protos import agent_pb2 as pb
from protos import agent_pb2_grpc as pb_grpc
from tests.agent.conftest import AUTH, ECHO, spec

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("no_blocking_calls")]


async def status_of(call: object) -> grpc.StatusCode:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call  # type: ignore[misc]
    return caught.value.code()


async def test_each_bad_input_gets_its_status(stub: pb_grpc.AgentAsyncStub) -> None:
    def create(s: pb.ServerSpec) -> object:
        return stub.CreateServer(pb.CreateServerRequest(spec=s), metadata=AUTH)

    unknown_image = spec("true")
    unknown_image.image = "encedeus/no-such-image:never"
    unknown_image.pull_policy = pb.PULL_POLICY_NEVER  # never a pull beyond loopback
    assert await status_of(create(unknown_image)) == grpc.StatusCode.FAILED_PRECONDITION
    tiny = spec("true", resources=pb.Resources(memory_bytes=1024))
    assert await status_of(create(tiny)) == grpc.StatusCode.INVALID_ARGUMENT
    greedy = spec("true", resources=pb.Resources(cpu_millis=1_000_000))
    assert await status_of(create(greedy)) == grpc.StatusCode.INVALID_ARGUMENT
    bad_id = spec("true")
    bad_id.id = "../etc"
    assert await status_of(create(bad_id)) == grpc.StatusCode.INVALID_ARGUMENT
    outside = spec("true", ports=[pb.PortBinding(container_port=80, host_port=80)])
    assert await status_of(create(outside)) == grpc.StatusCode.INVALID_ARGUMENT
    escape = spec("true")
    escape.files.add(path="../../etc/passwd", content=b"x")
    assert await status_of(create(escape)) == grpc.StatusCode.INVALID_ARGUMENT

    taken = spec(ECHO)
    await create(taken)  # type: ignore[misc]
    assert await status_of(create(taken)) == grpc.StatusCode.ALREADY_EXISTS
    stopped = stub.StopServer(pb.StopServerRequest(id=taken.id), metadata=AUTH)
    assert await status_of(stopped) == grpc.StatusCode.FAILED_PRECONDITION
    command = stub.SendCommand(pb.SendCommandRequest(id=taken.id, line="x"), metadata=AUTH)
    assert await status_of(command) == grpc.StatusCode.FAILED_PRECONDITION
    for call in (
        stub.GetServer(pb.GetServerRequest(id="nope"), metadata=AUTH),
        stub.StartServer(pb.StartServerRequest(id="nope"), metadata=AUTH),
        stub.GetStats(pb.GetStatsRequest(id="nope"), metadata=AUTH),
        stub.RemoveServer(pb.RemoveServerRequest(id="nope"), metadata=AUTH),
    ):
        assert await status_of(call) == grpc.StatusCode.NOT_FOUND
    logs = stub.GetLogs(pb.GetLogsRequest(id="nope"), metadata=AUTH)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for _ in logs:
            pass
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND

    # Still serving, and the refused creates left nothing behind.
    listed = await stub.ListServers(pb.ListServersRequest(), metadata=AUTH)
    assert [s.spec.id for s in listed.servers] == [taken.id]
    started = await stub.StartServer(pb.StartServerRequest(id=taken.id), metadata=AUTH)
    assert started.status.state == pb.SERVER_STATE_RUNNING


async def test_calls_need_the_node_secret(agent: RunningAgent) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{agent.grpc.port}") as channel:
        stub = pb_grpc.AgentStub(channel)
        assert await status_of(stub.GetNodeInfo(pb.GetNodeInfoRequest())) == (
            grpc.StatusCode.UNAUTHENTICATED
        )
        wrong = (("authorization", "Bearer not-the-secret"),)
        assert await status_of(stub.ListServers(pb.ListServersRequest(), metadata=wrong)) == (
            grpc.StatusCode.UNAUTHENTICATED
        )
        watch = stub.Watch(pb.WatchRequest(), metadata=wrong)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            async for _ in watch:
                pass
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
        health = health_pb2_grpc.HealthStub(channel)
        answer = await health.Check(
            health_pb2.HealthCheckRequest(service="encedeus.agent.v1.Agent")
        )
        assert answer.status == health_pb2.HealthCheckResponse.SERVING
        info = await stub.GetNodeInfo(pb.GetNodeInfoRequest(), metadata=AUTH)
        assert info.node_id == agent.identity.node_id


async def test_failed_create_keeps_files_written_meanwhile(
    agent: RunningAgent, stub: pb_grpc.AgentAsyncStub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An SFTP login works before the container exists: files it writes while a create
    is in flight survive that create failing (the control plane retries it)."""
    runtime = agent.supervisor.runtime
    real_create = runtime.create
    s = spec("true")
    s.image = "encedeus/no-such-image:never"
    upload = agent.supervisor.tracker.volumes_dir / s.id / "world" / "level.dat"

    async def create_while_a_user_uploads(container: ContainerSpec) -> ContainerInfo:
        await asyncio.to_thread(upload.parent.mkdir, parents=True)
        await asyncio.to_thread(upload.write_bytes, b"the user's world")
        return await real_create(container)

    async def seen_locally(*_: object) -> str:
        return ""  # so the create reaches the engine, which refuses the image

    monkeypatch.setattr(runtime, "create", create_while_a_user_uploads)
    monkeypatch.setattr(runtime, "local_image_digest", seen_locally)
    create = stub.CreateServer(pb.CreateServerRequest(spec=s), metadata=AUTH)
    assert await status_of(create) == grpc.StatusCode.FAILED_PRECONDITION
    assert await asyncio.to_thread(upload.read_bytes) == b"the user's world"
