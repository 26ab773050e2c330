"""The create-and-start path does each piece of host work once (bench/submit_to_running.py
times it): the data directory is made ready by the create and not again by its start,
while a later start of the same server still checks it."""

from __future__ import annotations

from typing import Any

import pytest
from docker.api.client import APIClient

from agent.daemon import RunningAgent
from agent.fleet.data_dir import ServerVolumes
from protos import agent_pb2 as pb
from protos import agent_pb2_grpc as pb_grpc
from tests.agent.conftest import AUTH, spec


async def test_create_and_start_readies_the_data_directory_once(
    agent: RunningAgent, stub: pb_grpc.AgentAsyncStub, monkeypatch: pytest.MonkeyPatch
) -> None:
    readied: list[str] = []
    ready = ServerVolumes.ready

    def counting_ready(self: ServerVolumes, server_spec: pb.ServerSpec) -> None:
        readied.append(server_spec.id)
        ready(self, server_spec)

    monkeypatch.setattr(ServerVolumes, "ready", counting_ready)
    server = spec("trap 'exit 0' TERM; while true; do sleep 1; done")
    request = pb.CreateServerRequest(spec=server, start=True)
    created = await stub.CreateServer(request, metadata=AUTH)
    assert created.status.state in (pb.SERVER_STATE_STARTING, pb.SERVER_STATE_RUNNING)
    assert readied == [server.id]

    stop = pb.StopServerRequest(id=server.id, timeout_seconds=1)
    await stub.StopServer(stop, metadata=AUTH)
    await stub.StartServer(pb.StartServerRequest(id=server.id), metadata=AUTH)
    assert readied == [server.id, server.id]  # a later start checks again
    await stub.RemoveServer(pb.RemoveServerRequest(id=server.id, delete_data=True), metadata=AUTH)


async def test_create_and_start_asks_the_engine_only_what_it_needs(
    agent: RunningAgent, stub: pb_grpc.AgentAsyncStub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Between the create and the start nothing is asked of the engine but the console
    attachment: the created container is what its spec says (an inspect there was a
    round trip on every start, bench/container_start.py)."""
    calls: list[str] = []
    for name in ("inspect_container", "create_container", "attach_socket", "start"):
        original = getattr(APIClient, name)

        def counting(
            self: APIClient, *args: Any, _name: str = name, _f: Any = original, **kw: Any
        ) -> Any:
            calls.append(_name)
            return _f(self, *args, **kw)

        monkeypatch.setattr(APIClient, name, counting)
    server = spec("sleep 30")
    created = await stub.CreateServer(
        pb.CreateServerRequest(spec=server, start=True), metadata=AUTH
    )
    assert created.status.state in (pb.SERVER_STATE_STARTING, pb.SERVER_STATE_RUNNING)
    between = calls[calls.index("create_container") + 1 : calls.index("start")]
    assert between == ["attach_socket"]
    await stub.KillServer(pb.KillServerRequest(id=server.id), metadata=AUTH)
    await stub.RemoveServer(pb.RemoveServerRequest(id=server.id, delete_data=True), metadata=AUTH)
