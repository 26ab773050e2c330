"""An ingress node's own replicas are dialled at their container's address (no Docker
port proxy in between), follow the container to a new address when it restarts, and
every other upstream keeps the host:port the control plane sent. Real dockerd, real
Caddy, a whole agent; the decision itself is unit-tested below."""

from __future__ import annotations

import asyncio
import json
import shutil
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import aiohttp
import grpc
import grpc.aio
import pytest

from agent.daemon import ingress_proxy
from agent.fleet.hub import WatchHub
from agent.fleet.supervisor import Supervisor
from agent.ingress.caddy_config import CaddySettings, caddy_config
from agent.ingress.local_upstreams import (
    PublishedPort,
    direct_dials,
    follow_servers,
    is_local_address,
)
from agent.runtime.docker_wire import container_address
from common.ports import free_ports
from protos import agent_pb2 as pb
from protos import agent_pb2_grpc as pb_grpc
from tests.agent.conftest import (
    AUTH,
    SESSION,
    SESSION_LABEL,
    agent_in_background,
    make_config,
    spec,
    wait_for_event,
)
from tests.agent.test_network import agent_stub
from tests.conftest import TEST_IMAGE
from tests.docker_support import docker_engine

REMOTE = "192.0.2.7:30500"  # TEST-NET-1: never an address of this machine
HOST, OTHER = "web.test", "remote.test"


def _table(version: int, local: str) -> pb.RouteTable:
    return pb.RouteTable(
        version=version,
        routes=[
            pb.Route(id="web", hosts=[HOST], upstreams=[pb.Upstream(address=local)]),
            pb.Route(id="other", hosts=[OTHER], upstreams=[pb.Upstream(address=REMOTE)]),
        ],
    )


# ---- the decision (pure) --------------------------------------------------------


def test_only_this_nodes_published_ports_are_dialled_at_the_container() -> None:
    ports = [
        PublishedPort("0.0.0.0", 30001, "172.18.0.5:8080"),
        PublishedPort("10.0.0.7", 30002, "172.18.0.6:80"),
    ]
    table = pb.RouteTable(
        version=1,
        routes=[
            pb.Route(
                id="a",
                hosts=["a.test"],
                upstreams=[
                    pb.Upstream(address="10.0.0.7:30001"),  # ours, published on all
                    pb.Upstream(address="10.0.0.7:30002"),  # ours, on that address
                    pb.Upstream(address="10.0.0.8:30001"),  # same port, another node
                    pb.Upstream(address="10.0.0.7:30003"),  # not a port of ours
                    pb.Upstream(address="127.0.0.1:30002"),  # published elsewhere
                ],
            )
        ],
    )
    local = {"10.0.0.7", "127.0.0.1"}
    dials = direct_dials(table, ports, lambda host: host in local)
    assert dials == {"10.0.0.7:30001": "172.18.0.5:8080", "10.0.0.7:30002": "172.18.0.6:80"}
    settings = CaddySettings("unix//run/a.sock", 80, 443, "/tls")
    route = caddy_config(table, settings, dials)["apps"]["http"]["servers"]["http"]["routes"][0]
    assert [u["dial"] for u in route["handle"][0]["upstreams"]] == [
        "172.18.0.5:8080",
        "172.18.0.6:80",
        "10.0.0.8:30001",
        "10.0.0.7:30003",
        "127.0.0.1:30002",
    ]


def test_dial_containers_off_leaves_every_upstream_as_sent(tmp_path: Path) -> None:
    server = SimpleNamespace(
        info=SimpleNamespace(running=True, ip_address="172.18.0.5"),
        spec=pb.ServerSpec(ports=[pb.PortBinding(container_port=80, host_port=30001)]),
    )
    supervisor = cast(Supervisor, SimpleNamespace(servers={"s": server}))
    ingress = {"enabled": True, "dial_containers": True}
    on = ingress_proxy(make_config(tmp_path, "n", ingress=ingress), supervisor)
    ingress["dial_containers"] = False
    off = ingress_proxy(make_config(tmp_path, "n", ingress=ingress), supervisor)
    assert on is not None
    assert off is not None
    assert list(on.local_ports()) == [PublishedPort("", 30001, "172.18.0.5:80")]
    assert list(off.local_ports()) == []


def test_local_addresses_are_the_machines_own_ips_never_names() -> None:
    assert is_local_address("127.0.0.1")
    assert not is_local_address("192.0.2.7")
    assert not is_local_address("localhost")
    assert not is_local_address("[::ffff:192.0.2.7]")


async def test_every_lifecycle_burst_refreshes_and_a_dropped_subscription_is_taken_again() -> None:
    hub, refreshed = WatchHub(), asyncio.Event()
    calls = 0

    async def refresh() -> None:
        nonlocal calls
        calls += 1
        refreshed.set()

    following = asyncio.create_task(follow_servers(hub, refresh))
    try:
        await asyncio.sleep(0)
        for kind in (pb.LIFECYCLE_KIND_STARTED, pb.LIFECYCLE_KIND_RUNNING):
            hub.publish(pb.LifecycleEvent(server_id="s", kind=kind))
        await asyncio.wait_for(refreshed.wait(), 5)
        assert calls == 1  # one burst, one refresh
        refreshed.clear()
        hub.close()  # drops every subscriber
        await asyncio.wait_for(refreshed.wait(), 5)
        refreshed.clear()
        hub.publish(pb.LifecycleEvent(server_id="s", kind=pb.LIFECYCLE_KIND_EXITED))
        await asyncio.wait_for(refreshed.wait(), 5)
    finally:
        following.cancel()
        await asyncio.gather(following, return_exceptions=True)


# ---- for real --------------------------------------------------------------------


async def _dials(socket: Path) -> dict[str, list[str]]:
    """Host -> the addresses Caddy dials for it, read back from its admin API."""
    connector = aiohttp.UnixConnector(path=str(socket))
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        session.get("http://localhost/config/apps/http/servers/http/routes") as response,
    ):
        routes: list[dict[str, Any]] = json.loads(await response.text())
    return {
        route["match"][0]["host"][0]: [u["dial"] for u in route["handle"][0]["upstreams"]]
        for route in routes
        if "match" in route
    }


async def _get(port: int, host: str) -> tuple[int, bytes]:
    timeout = aiohttp.ClientTimeout(total=10)
    async with (
        aiohttp.ClientSession(timeout=timeout) as session,
        session.get(f"http://127.0.0.1:{port}/index.html", headers={"Host": host}) as response,
    ):
        return response.status, await response.read()


def _hold_address(network: str, address: str) -> list[str]:
    """Containers on `network` until one holds `address` (the engine hands out the
    lowest free one), so that a restart cannot get it back; fewer when another test's
    container took it first."""
    held: list[str] = []
    with docker_engine() as client:
        for _ in range(12):
            created = client.api.create_container(
                TEST_IMAGE, ["sleep", "600"], labels={SESSION_LABEL: SESSION},
                host_config=client.api.create_host_config(network_mode=network),
            )  # fmt: skip
            held.append(str(created["Id"]))
            client.api.start(created["Id"])
            attrs = client.api.inspect_container(created["Id"])
            if container_address(attrs["NetworkSettings"]) == address:
                break
    return held


def _remove(containers: list[str]) -> None:
    with docker_engine() as client:
        for container in containers:
            client.api.remove_container(container, force=True)


async def _apply(stub: pb_grpc.AgentAsyncStub, table: pb.RouteTable) -> None:
    """ApplyRoutes once Caddy is up (UNAVAILABLE until then)."""
    async with asyncio.timeout(15):
        while True:
            try:
                await stub.ApplyRoutes(table, metadata=AUTH)
                return
            except grpc.aio.AioRpcError as exc:
                if exc.code() != grpc.StatusCode.UNAVAILABLE:
                    raise
            await asyncio.sleep(0.1)


async def _eventually_dial(socket: Path, expected: str) -> None:
    async with asyncio.timeout(10):
        while (await _dials(socket)).get(HOST) != [expected]:
            await asyncio.sleep(0.05)


@pytest.fixture
async def ingress_agent(tmp_path: Path) -> AsyncIterator[tuple[Any, int]]:
    http_port, https_port = free_ports(2)
    ingress = {
        "enabled": True,
        "http_port": http_port,
        "https_port": https_port,
        "listen_host": "127.0.0.1",
    }
    config = make_config(tmp_path, f"node-{uuid.uuid4().hex[:8]}", ingress=ingress)
    async with agent_in_background(config) as agent:
        yield agent, http_port


@pytest.mark.docker
@pytest.mark.skipif(shutil.which("caddy") is None, reason="caddy not installed")
async def test_a_local_replica_is_dialled_at_its_container_across_a_restart(
    ingress_agent: tuple[Any, int],
) -> None:
    agent, port = ingress_agent
    socket = agent.config.ingress_dir / "admin.sock"
    binding = pb.PortBinding(container_port=8080, host_ip="127.0.0.1")
    check = pb.HealthCheck(tcp_port=8080, period_seconds=1)
    web = spec("exec httpd -f -p 8080 -h /data", ports=[binding], health_check=check)
    web.files.add(path="index.html", content=b"hello\n")
    holders: list[str] = []
    async with agent_stub(agent) as stub:
        watch = stub.Watch(pb.WatchRequest(), metadata=AUTH)
        events = watch.__aiter__()
        try:
            request = pb.CreateServerRequest(spec=web, start=True)
            created = await stub.CreateServer(request, metadata=AUTH)
            await wait_for_event(events, web.id, pb.LIFECYCLE_KIND_RUNNING)
            published = f"127.0.0.1:{created.spec.ports[0].host_port}"
            first = agent.supervisor.get(web.id).info.ip_address
            await _apply(stub, _table(1, published))
            assert await _dials(socket) == {HOST: [f"{first}:8080"], OTHER: [REMOTE]}
            assert await _get(port, HOST) == (200, b"hello\n")

            stop = pb.StopServerRequest(id=web.id, timeout_seconds=2)
            await stub.StopServer(stop, metadata=AUTH)
            await wait_for_event(events, web.id, pb.LIFECYCLE_KIND_EXITED)
            # Stopped: back to the published port, which refuses at once (a released
            # container address would only time out).
            await _eventually_dial(socket, published)
            network = agent.config.network
            holders = await asyncio.to_thread(_hold_address, network, first)
            await stub.StartServer(pb.StartServerRequest(id=web.id), metadata=AUTH)
            await wait_for_event(events, web.id, pb.LIFECYCLE_KIND_RUNNING)
            second = agent.supervisor.get(web.id).info.ip_address
            assert second not in ("", first)
            await _eventually_dial(socket, f"{second}:8080")
            assert await _get(port, HOST) == (200, b"hello\n")
            assert (await _dials(socket))[OTHER] == [REMOTE]
        finally:
            watch.cancel()
            await asyncio.to_thread(_remove, holders)
