"""Template install scripts on the real dockerd: the install container's hardening,
its output, its exit code, retries after a failure and ReinstallServer."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest

from agent.daemon import RunningAgent
from protos import agent_pb2 as pb
from protos import agent_pb2_grpc as pb_grpc
from tests.agent.conftest import AUTH, ECHO, spec
from tests.conftest import TEST_IMAGE

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("no_blocking_calls")]
PROBE = (
    "id -u > uid; grep CapEff /proc/self/status > caps; "
    "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' > interfaces; "
    "mkdir -p made/deeper; echo hello > made/deeper/file; echo probed"
)


def with_install(command: str, script: str, *, network: bool = False) -> pb.ServerSpec:
    s = spec(command)
    s.install.CopyFrom(pb.InstallScript(image=TEST_IMAGE, entrypoint="sh", script=script,
                                        network=network))  # fmt: skip
    return s


async def read(path: Path) -> str:
    return await asyncio.to_thread(path.read_text)


async def owner_of(path: Path) -> tuple[int, int]:
    stat = await asyncio.to_thread(path.stat)
    return stat.st_uid, stat.st_gid


async def lines(stub: pb_grpc.AgentAsyncStub, server_id: str) -> list[tuple[str, str]]:
    request = pb.GetLogsRequest(id=server_id)
    return [(line.stream, line.text) async for line in stub.GetLogs(request, metadata=AUTH)]


async def test_the_install_runs_once_as_root_without_capabilities_or_network(
    stub: pb_grpc.AgentAsyncStub, agent: RunningAgent
) -> None:
    s = with_install("echo started; " + ECHO, PROBE)
    created = await stub.CreateServer(pb.CreateServerRequest(spec=s, start=True), metadata=AUTH)
    assert created.status.install_state == "installed"
    assert created.status.install_exit_code == 0
    data = Path(agent.supervisor.volumes.path(s.id))
    assert await read(data / "uid") == "0\n"
    assert (await read(data / "caps")).split() == ["CapEff:", "0000000000000000"]
    assert (await read(data / "interfaces")).split() == ["lo"]
    owner = agent.supervisor.volumes.owner_of(s)
    for path in (data / "made", data / "made/deeper", data / "made/deeper/file", data / "uid"):
        assert await owner_of(path) == owner, path
    logged = await lines(stub, s.id)
    assert ("install", "probed") in logged
    assert logged.index(("install", "probed")) < logged.index(("stdout", "started"))
    await stub.RestartServer(pb.RestartServerRequest(id=s.id), metadata=AUTH)
    assert [entry for entry in await lines(stub, s.id) if entry[0] == "install"] == [
        ("install", "probed")
    ]  # not again


async def test_an_install_may_ask_for_the_network(
    stub: pb_grpc.AgentAsyncStub, agent: RunningAgent
) -> None:
    s = with_install(ECHO, PROBE, network=True)
    await stub.CreateServer(pb.CreateServerRequest(spec=s, start=True), metadata=AUTH)
    interfaces = (await read(agent.supervisor.volumes.path(s.id) / "interfaces")).split()
    assert "eth0" in interfaces


async def test_a_failed_install_fails_the_start_and_is_retried(
    stub: pb_grpc.AgentAsyncStub,
) -> None:
    s = with_install(ECHO, "echo broken; exit 3")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.CreateServer(pb.CreateServerRequest(spec=s, start=True), metadata=AUTH)
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "exit code 3" in str(caught.value.details())
    server = await stub.GetServer(pb.GetServerRequest(id=s.id), metadata=AUTH)
    assert server.status.state == pb.SERVER_STATE_OFFLINE
    assert (server.status.install_state, server.status.install_exit_code) == ("failed", 3)
    with pytest.raises(grpc.aio.AioRpcError):
        await stub.StartServer(pb.StartServerRequest(id=s.id), metadata=AUTH)
    broken = [entry for entry in await lines(stub, s.id) if entry == ("install", "broken")]
    assert len(broken) == 2


async def test_reinstall_stops_the_server_and_runs_the_script_again(
    stub: pb_grpc.AgentAsyncStub, agent: RunningAgent
) -> None:
    s = with_install(ECHO, "echo run >> runs")
    await stub.CreateServer(pb.CreateServerRequest(spec=s, start=True), metadata=AUTH)
    server = await stub.ReinstallServer(pb.ReinstallServerRequest(id=s.id), metadata=AUTH)
    assert server.status.state == pb.SERVER_STATE_OFFLINE
    runs = agent.supervisor.volumes.path(s.id) / "runs"
    assert await read(runs) == "run\nrun\n"
    plain = spec(ECHO)
    await stub.CreateServer(pb.CreateServerRequest(spec=plain), metadata=AUTH)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.ReinstallServer(pb.ReinstallServerRequest(id=plain.id), metadata=AUTH)
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_an_install_outlives_a_call_whose_deadline_passed(
    stub: pb_grpc.AgentAsyncStub, agent: RunningAgent
) -> None:
    s = with_install(ECHO, "echo run >> runs; sleep 2")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.CreateServer(
            pb.CreateServerRequest(spec=s, start=True), metadata=AUTH, timeout=0.5
        )
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    started = await stub.StartServer(pb.StartServerRequest(id=s.id), metadata=AUTH)
    assert started.status.install_state == "installed"
    assert await read(agent.supervisor.volumes.path(s.id) / "runs") == "run\n"  # once
