"""Servers of different accounts on one node cannot reach each other's unpublished
ports: containers join the agent's own bridge network, which has inter-container
traffic disabled, while the host and published ports still reach them."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import docker
import grpc.aio
import pytest

from agent.config import AgentConfig, NodeIdentity
from agent.daemon import RunningAgent, running_agent
from agent.runtime import DockerRuntime
from agent.runtime.docker_wire import container_address
from protos import agent_pb2 as pb
from protos import agent_pb2_grpc as pb_grpc
from tests.agent.conftest import (
    AUTH,
    SESSION,
    agent_in_background,
    make_config,
    spec,
    wait_for_event,
)
from tests.docker_support import docker_engine, remove_labelled_containers

# Only the test on the `agent` fixture checks for blocking calls: the others stop
# agents (and with them gRPC's poller thread) inside the test.
pytestmark = pytest.mark.docker

ICC = "com.docker.network.bridge.enable_icc"
PAGE = b"only for the host\n"


@contextlib.asynccontextmanager
async def agent_stub(agent: RunningAgent) -> AsyncIterator[pb_grpc.AgentAsyncStub]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{agent.grpc.port}") as channel:
        yield pb_grpc.AgentStub(channel)


def inspect_network(name: str) -> dict[str, Any]:
    """The network named exactly `name` with the smallest id."""
    with docker_engine() as client:
        found = [n for n in client.api.networks(filters={"name": name}) if n["Name"] == name]
        chosen = min(found, key=lambda n: str(n["Id"]))
        return dict(client.api.inspect_network(chosen["Id"]))


def network_mode(server_id: str) -> str:
    with docker_engine() as client:
        attrs = client.api.inspect_container(f"encedeus-{server_id}")
        return str(attrs["HostConfig"]["NetworkMode"])


def remove_networks(name: str) -> None:
    with docker_engine() as client:
        for network in client.api.networks(filters={"name": name}):
            if network["Name"] == name:
                with contextlib.suppress(docker.errors.NotFound):
                    client.api.remove_network(network["Id"])


@pytest.fixture
def network_name() -> Iterator[str]:
    """A network of this test alone, removed afterwards (with any duplicate)."""
    name = f"encedeus-test-{SESSION}-{uuid.uuid4().hex[:6]}"
    yield name
    remove_networks(name)


async def web_server(stub: pb_grpc.AgentAsyncStub, agent: RunningAgent) -> tuple[str, int]:
    """Start an httpd on container port 8080 (published on loopback); its container
    address (once the agent's own TCP health probe to it passed) and host port."""
    check = pb.HealthCheck(tcp_port=8080, period_seconds=1)
    port = pb.PortBinding(container_port=8080, host_ip="127.0.0.1")
    server = spec("httpd -f -p 8080 -h /data", ports=[port], health_check=check)
    server.files.add(path="index.html", content=PAGE)
    watch = stub.Watch(pb.WatchRequest(), metadata=AUTH)
    try:
        request = pb.CreateServerRequest(spec=server, start=True)
        created = await stub.CreateServer(request, metadata=AUTH)
        await wait_for_event(watch.__aiter__(), server.id, pb.LIFECYCLE_KIND_RUNNING)
    finally:
        watch.cancel()
    address = agent.supervisor.get(server.id).info.ip_address
    assert address
    return address, created.spec.ports[0].host_port


async def connect_exit_code(stub: pb_grpc.AgentAsyncStub, address: str) -> int:
    """Exit code of a second server (no published port) connecting to `address`:8080
    with a 2 s timeout: 0 when it connected. (This busybox's wget crashes.)"""
    command = f"exec nc -w 2 {address} 8080 </dev/null"
    client = spec(command, network_disabled=False)
    watch = stub.Watch(pb.WatchRequest(), metadata=AUTH)
    try:
        await stub.CreateServer(pb.CreateServerRequest(spec=client, start=True), metadata=AUTH)
        exited = await wait_for_event(watch.__aiter__(), client.id, pb.LIFECYCLE_KIND_EXITED)
    finally:
        watch.cancel()
    return exited.exit_code


async def http_get(url: str) -> bytes:
    timeout = aiohttp.ClientTimeout(total=5)
    async with aiohttp.ClientSession(timeout=timeout) as http, http.get(url) as response:
        return await response.read()


@pytest.mark.parametrize(("network", "reachable"), [("encedeus", False), ("bridge", True)])
async def test_servers_reach_each_other_only_on_the_default_bridge(
    tmp_path: Path, network: str, reachable: bool
) -> None:
    config = make_config(tmp_path, f"node-{uuid.uuid4().hex[:8]}", network=network)
    async with agent_in_background(config) as agent, agent_stub(agent) as stub:
        address, host_port = await web_server(stub, agent)
        assert await http_get(f"http://{address}:8080/index.html") == PAGE
        assert await http_get(f"http://127.0.0.1:{host_port}/index.html") == PAGE
        exit_code = await connect_exit_code(stub, address)
        assert (exit_code == 0) is reachable, f"nc exited {exit_code}"


@pytest.mark.usefixtures("no_blocking_calls")
async def test_the_agent_creates_an_isolated_labelled_network(agent: RunningAgent) -> None:
    async with agent_stub(agent) as stub:
        server = spec("sleep 600", network_disabled=False)
        await stub.CreateServer(pb.CreateServerRequest(spec=server), metadata=AUTH)
    network = await asyncio.to_thread(inspect_network, "encedeus")
    assert network["Driver"] == "bridge"
    assert network["Options"][ICC] == "false"
    assert network["Labels"]["encedeus.managed"] == "true"
    assert await asyncio.to_thread(network_mode, server.id) == network["Id"]


async def test_agents_starting_together_share_one_network(
    tmp_path: Path, network_name: str
) -> None:
    configs = [
        make_config(tmp_path / str(n), f"node-{uuid.uuid4().hex[:8]}", network=network_name)
        for n in range(2)
    ]
    async with contextlib.AsyncExitStack() as stack:
        agents = await asyncio.gather(
            *(stack.enter_async_context(agent_in_background(c)) for c in configs)
        )
        servers = [spec("sleep 600", network_disabled=False) for _ in agents]
        for agent, server in zip(agents, servers, strict=True):
            async with agent_stub(agent) as stub:
                await stub.CreateServer(pb.CreateServerRequest(spec=server), metadata=AUTH)
        modes = {await asyncio.to_thread(network_mode, s.id) for s in servers}
    network = await asyncio.to_thread(inspect_network, network_name)
    assert modes == {network["Id"]}
    assert network["Options"][ICC] == "false"


async def test_duplicate_networks_resolve_to_the_smallest_id(network_name: str) -> None:
    def make_duplicates() -> list[str]:
        # As two engine clients racing on Docker 20.10 can; not ours, so used as is.
        with docker_engine() as client:
            made = [client.api.create_network(network_name, driver="bridge") for _ in range(2)]
            return sorted(str(n["Id"]) for n in made)

    ids = await asyncio.to_thread(make_duplicates)
    runtime = await asyncio.to_thread(DockerRuntime, threads=2)
    try:
        assert await runtime.use_network(network_name) == ids[0]
    finally:
        await runtime.close()


async def test_server_on_the_default_bridge_survives_an_agent_restart(tmp_path: Path) -> None:
    node = f"node-{uuid.uuid4().hex[:8]}"
    before = make_config(tmp_path, node, network="bridge")  # as agents did before
    identity = NodeIdentity(node_id=node, node_secret=before.node_secret)
    server = spec("sleep 600", network_disabled=False)
    try:
        async with running_agent(before, identity) as agent, agent_stub(agent) as stub:
            request = pb.CreateServerRequest(spec=server, start=True)
            container_id = (await stub.CreateServer(request, metadata=AUTH)).status.container_id
        after: AgentConfig = make_config(tmp_path, node)
        async with agent_in_background(after) as agent, agent_stub(agent) as stub:
            got = await stub.GetServer(pb.GetServerRequest(id=server.id), metadata=AUTH)
            assert got.status.container_id == container_id
            assert got.status.state == pb.SERVER_STATE_RUNNING
            assert agent.supervisor.get(server.id).info.ip_address
            assert await asyncio.to_thread(network_mode, server.id) in ("default", "bridge")
    finally:
        await asyncio.to_thread(remove_labelled_containers, {"encedeus.node": node})


def test_container_address_falls_back_to_the_first_network() -> None:
    default_bridge = {"IPAddress": "172.17.0.5", "Networks": {"bridge": {"IPAddress": "x"}}}
    assert container_address(default_bridge) == "172.17.0.5"
    own = {"IPAddress": "", "Networks": {"encedeus": {"IPAddress": "172.18.0.3"}}}
    assert container_address(own) == "172.18.0.3"
    assert container_address({"IPAddress": "", "Networks": {"none": {"IPAddress": ""}}}) == ""
    assert container_address({}) == ""


def test_network_setting_defaults_to_the_isolated_network(tmp_path: Path) -> None:
    assert make_config(tmp_path, "n").network == "encedeus"
    with pytest.raises(ValueError, match="network"):
        make_config(tmp_path, "n", network="")
