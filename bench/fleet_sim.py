"""A simulated fleet for benchmarks: one gRPC server speaking the Agent service
(protos/agent.proto) for many node identities.

Every simulated node listens on its own port of 127.0.0.1 (one `grpc.aio` server
bound to all of them) and is told apart by the node secret its caller presents in
the `authorization` metadata, as the real agent checks it (agent/rpc/auth.py). A
create answers at once with a running container and publishes the lifecycle events
a real agent publishes (created, started, running) on the node's Watch streams;
Watch heartbeats at the requested interval with real HostStats, every server's
status and a ServerStats per running server. :meth:`FleetSimulator.silence` makes
nodes go silent: their streams end UNAVAILABLE and every later call is refused the
same way, as for a host that lost power.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any

import grpc
import grpc.aio

from agent.fleet.hub import WatchHub
from agent.rpc.heartbeat import ShownServers
from common.ports import pick_ports
from protos import agent_pb2 as pb
from protos import agent_pb2_grpc as pb_grpc

Context = grpc.aio.ServicerContext[Any, Any]
CPU_COUNT = 8
MEMORY_BYTES = 32 * 1024**3
DISK_BYTES = 500 * 1024**3


def _now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(slots=True)
class SimNode:
    """One simulated agent: its port, identity and servers."""

    name: str
    port: int
    node_id: str = ""
    secret: str = ""
    servers: dict[str, pb.Server] = field(default_factory=dict)
    hub: WatchHub = field(default_factory=WatchHub)
    silent: bool = False
    started_ms: int = field(default_factory=_now_ms)
    creates: int = 0

    @property
    def address(self) -> str:
        """What the node advertises at enrolment."""
        return f"127.0.0.1:{self.port}"

    def fingerprint(self) -> dict[str, object]:
        """The fingerprint sent at enrolment (the JSON form of pb.Fingerprint)."""
        return {
            "cpu_count": CPU_COUNT,
            "cpu_model": "simulated",
            "memory_bytes": MEMORY_BYTES,
            "disk_bytes": DISK_BYTES,
            "os": "linux",
            "hostname": self.name,
            "agent_version": "sim",
        }

    def host_stats(self) -> pb.HostStats:
        """Plausible host figures, moving a little with the number of servers."""
        running = len(self.servers)
        return pb.HostStats(
            cpu_percent=5.0 + 2.0 * running,
            memory_used_bytes=1024**3 + running * 64 * 1024**2,
            memory_total_bytes=MEMORY_BYTES,
            disk_used_bytes=20 * 1024**3,
            disk_total_bytes=DISK_BYTES,
            load1=0.3,
            load5=0.2,
            load15=0.1,
            uptime_ms=_now_ms() - self.started_ms,
        )

    def heartbeat(self, shown: ShownServers) -> pb.WatchEvent:
        """One heartbeat as the real agent builds it (agent/rpc/servicer.py); the
        statuses here change in place, so their bytes are what `shown` compares."""
        now = _now_ms()
        stats = [
            pb.ServerStats(
                id=server_id,
                memory_bytes=48 * 1024**2,
                memory_limit_bytes=server.spec.resources.memory_bytes,
                cpu_absolute=1.5,
                network=pb.NetworkStats(rx_bytes=1000, tx_bytes=500),
                disk_bytes=4096,
                uptime_ms=now - server.status.started_at_ms,
                state=server.status.state,
            )
            for server_id, server in self.servers.items()
            if server.status.state == pb.SERVER_STATE_RUNNING
        ]
        statuses = [s.status for s in self.servers.values()]
        unchanged = shown.unchanged([s.SerializeToString(deterministic=True) for s in statuses])
        beat = pb.Heartbeat(
            host=self.host_stats(),
            servers=[] if unchanged else statuses,
            servers_unchanged=unchanged,
            stats=stats,
        )
        return self.hub.stamp(pb.WatchEvent(heartbeat=beat))

    def publish(self, server: pb.Server, kind: pb.LifecycleKind.ValueType) -> None:
        """Tell the node's Watch streams about `server`."""
        status = pb.ServerStatus()
        status.CopyFrom(server.status)
        self.hub.publish(pb.LifecycleEvent(server_id=server.spec.id, kind=kind, status=status))

    def run(self, spec: pb.ServerSpec, *, start: bool) -> pb.Server:
        """Create (and start) a server at once, publishing what a real agent would."""
        now = _now_ms()
        status = pb.ServerStatus(
            id=spec.id,
            container_id=f"sim-{spec.id}",
            state=pb.SERVER_STATE_OFFLINE,
            created_at_ms=now,
            labels=spec.labels,
        )
        server = pb.Server(spec=spec, status=status)
        self.servers[spec.id] = server
        self.creates += 1
        self.publish(server, pb.LIFECYCLE_KIND_CREATED)
        if start:
            self.start(server)
        return server

    def start(self, server: pb.Server) -> None:
        """The container starts and, with no health check, is running at once."""
        server.status.state = pb.SERVER_STATE_STARTING
        server.status.started_at_ms = _now_ms()
        server.status.exited = False
        self.publish(server, pb.LIFECYCLE_KIND_STARTED)
        server.status.state = pb.SERVER_STATE_RUNNING
        self.publish(server, pb.LIFECYCLE_KIND_RUNNING)

    def stop(self, server: pb.Server) -> None:
        """The container exits on request."""
        server.status.state = pb.SERVER_STATE_OFFLINE
        server.status.exited = True
        server.status.finished_at_ms = _now_ms()
        self.publish(server, pb.LIFECYCLE_KIND_EXITED)


class _Abort(Exception):
    pass


class SimAgentService(pb_grpc.AgentServicer):
    """The Agent service for every simulated node, chosen by the caller's secret."""

    def __init__(self, fleet: FleetSimulator) -> None:
        self.fleet = fleet

    async def _node(self, context: Context) -> SimNode:
        presented = ""
        for key, value in context.invocation_metadata() or ():
            if key == "authorization":
                presented = value if isinstance(value, str) else value.decode()
        node = self.fleet.by_secret.get(presented.removeprefix("Bearer "))
        if node is None:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong node secret")
            raise _Abort
        if node.silent:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "node is silent")
            raise _Abort
        return node

    async def _server(self, context: Context, server_id: str) -> tuple[SimNode, pb.Server]:
        node = await self._node(context)
        server = node.servers.get(server_id)
        if server is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no server {server_id}")
            raise _Abort
        return node, server

    async def GetNodeInfo(self, request: pb.GetNodeInfoRequest, context: Context) -> pb.NodeInfo:
        node = await self._node(context)
        fingerprint = pb.Fingerprint(
            cpu_count=CPU_COUNT, memory_bytes=MEMORY_BYTES, disk_bytes=DISK_BYTES
        )
        return pb.NodeInfo(
            node_id=node.node_id,
            fingerprint=fingerprint,
            host=node.host_stats(),
            started_at_ms=node.started_ms,
            port_range_start=30000,
            port_range_end=30999,
        )

    async def CreateServer(self, request: pb.CreateServerRequest, context: Context) -> pb.Server:
        node = await self._node(context)
        if request.spec.id in node.servers:
            await context.abort(grpc.StatusCode.ALREADY_EXISTS, request.spec.id)
        return node.run(request.spec, start=request.start)

    async def RecreateServer(self, request: pb.CreateServerRequest, context: Context) -> pb.Server:
        node = await self._node(context)
        node.servers.pop(request.spec.id, None)
        return node.run(request.spec, start=request.start)

    async def StartServer(self, request: pb.StartServerRequest, context: Context) -> pb.Server:
        node, server = await self._server(context, request.id)
        if server.status.state != pb.SERVER_STATE_RUNNING:
            node.start(server)
        return server

    async def StopServer(self, request: pb.StopServerRequest, context: Context) -> pb.Server:
        node, server = await self._server(context, request.id)
        if server.status.state != pb.SERVER_STATE_RUNNING:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "not running")
        node.stop(server)
        return server

    async def RestartServer(self, request: pb.RestartServerRequest, context: Context) -> pb.Server:
        node, server = await self._server(context, request.id)
        node.stop(server)
        node.start(server)
        return server

    async def KillServer(self, request: pb.KillServerRequest, context: Context) -> pb.Server:
        node, server = await self._server(context, request.id)
        node.stop(server)
        return server

    async def ReinstallServer(
        self, request: pb.ReinstallServerRequest, context: Context
    ) -> pb.Server:
        node, server = await self._server(context, request.id)
        node.stop(server)  # simulated servers have no install script to run
        return server

    async def ApplyRoutes(self, request: pb.RouteTable, context: Context) -> pb.ApplyRoutesResponse:
        await self._node(context)
        await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "simulated nodes are no ingress")
        raise AssertionError("unreachable")

    async def CheckImage(
        self, request: pb.CheckImageRequest, context: Context
    ) -> pb.CheckImageResponse:
        await self._node(context)
        return pb.CheckImageResponse(availability=pb.IMAGE_AVAILABILITY_PRESENT)

    async def CreateBackup(
        self, request: pb.CreateBackupRequest, context: Context
    ) -> pb.BackupResult:
        node, _ = await self._server(context, request.server_id)
        snapshot = f"{request.backup_id.encode().hex():0>64}"[:64]
        return pb.BackupResult(
            snapshot_id=snapshot,
            repository=f"node:{node.node_id}",
            checksum=f"sha256:{snapshot}",
            time_ms=_now_ms(),
        )

    async def RestoreBackup(
        self, request: pb.RestoreBackupRequest, context: Context
    ) -> pb.RestoreBackupResponse:
        _, server = await self._server(context, request.server_id)
        return pb.RestoreBackupResponse(restarted=server.status.state == pb.SERVER_STATE_RUNNING)

    async def DeleteBackup(
        self, request: pb.DeleteBackupRequest, context: Context
    ) -> pb.DeleteBackupResponse:
        await self._node(context)
        return pb.DeleteBackupResponse(deleted=True)

    async def DeleteVolume(
        self, request: pb.DeleteVolumeRequest, context: Context
    ) -> pb.DeleteVolumeResponse:
        await self._node(context)
        return pb.DeleteVolumeResponse(deleted=False)  # simulated nodes keep no data

    async def SendVolume(
        self, request: pb.SendVolumeRequest, context: Context
    ) -> AsyncIterator[pb.TransferProgress]:
        await self._node(context)  # simulated nodes keep no data: an empty stream
        yield pb.TransferProgress(done=True, sha256=hashlib.sha256(b"").hexdigest())

    async def RemoveServer(
        self, request: pb.RemoveServerRequest, context: Context
    ) -> pb.RemoveServerResponse:
        node, server = await self._server(context, request.id)
        del node.servers[request.id]
        node.publish(server, pb.LIFECYCLE_KIND_REMOVED)
        return pb.RemoveServerResponse(removed=True)

    async def GetServer(self, request: pb.GetServerRequest, context: Context) -> pb.Server:
        return (await self._server(context, request.id))[1]

    async def ListServers(
        self, request: pb.ListServersRequest, context: Context
    ) -> pb.ListServersResponse:
        node = await self._node(context)
        wanted = dict(request.label_filter).items()
        servers = [s for s in node.servers.values() if wanted <= dict(s.spec.labels).items()]
        return pb.ListServersResponse(servers=servers)

    async def SendCommand(
        self, request: pb.SendCommandRequest, context: Context
    ) -> pb.SendCommandResponse:
        await self._server(context, request.id)
        return pb.SendCommandResponse()

    async def GetLogs(
        self, request: pb.GetLogsRequest, context: Context
    ) -> AsyncIterator[pb.LogLine]:
        await self._server(context, request.id)
        nothing: list[pb.LogLine] = []  # a simulated server prints nothing
        for line in nothing:
            yield line

    async def GetStats(self, request: pb.GetStatsRequest, context: Context) -> pb.ServerStats:
        _, server = await self._server(context, request.id)
        return pb.ServerStats(id=request.id, state=server.status.state)

    async def Watch(
        self, request: pb.WatchRequest, context: Context
    ) -> AsyncIterator[pb.WatchEvent]:
        node = await self._node(context)
        interval = max(request.heartbeat_interval_ms or 1000, 100) / 1000
        loop = asyncio.get_running_loop()
        queue = node.hub.subscribe()
        self.fleet.streams[id(queue)] = (node, queue)
        shown = ShownServers(omit_unchanged=request.omit_unchanged_servers)
        try:
            yield node.heartbeat(shown)
            next_beat = loop.time() + interval
            while not node.silent:
                remaining = next_beat - loop.time()
                if remaining <= 0:
                    yield node.heartbeat(shown)
                    next_beat = max(next_beat + interval, loop.time() + interval / 2)
                    continue
                try:
                    async with asyncio.timeout(remaining):
                        event = await queue.get()
                except TimeoutError:
                    continue
                if event is None:
                    break
                yield event
            if node.silent:
                await context.abort(grpc.StatusCode.UNAVAILABLE, "node is silent")
        finally:
            self.fleet.streams.pop(id(queue), None)
            node.hub.unsubscribe(queue)


class FleetSimulator:
    """`size` simulated nodes behind one gRPC server; use as an async context."""

    def __init__(self, size: int) -> None:
        self.nodes = [
            SimNode(name=f"sim-{n:04d}", port=port) for n, port in enumerate(pick_ports([0] * size))
        ]
        self.by_secret: dict[str, SimNode] = {}
        self.streams: dict[int, tuple[SimNode, asyncio.Queue[pb.WatchEvent | None]]] = {}
        self._server: grpc.aio.Server | None = None

    async def __aenter__(self) -> FleetSimulator:
        server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
        pb_grpc.add_AgentServicer_to_server(SimAgentService(self), server)
        for node in self.nodes:
            server.add_insecure_port(node.address)
        await server.start()
        self._server = server
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._server is not None:
            await self._server.stop(grace=None)

    def enrolled(self, node: SimNode, node_id: str, secret: str) -> None:
        """The control plane gave `node` its identity; calls with `secret` reach it."""
        node.node_id, node.secret = node_id, secret
        self.by_secret[secret] = node

    def silence(self, nodes: Iterable[SimNode]) -> None:
        """The nodes stop answering: open streams end, later calls are refused."""
        for node in nodes:
            node.silent = True
        for node, queue in list(self.streams.values()):
            if node.silent:
                queue.put_nowait(None)

    def running(self, *, include_silent: bool = False) -> int:
        """Running servers on the (live) nodes."""
        return sum(
            1
            for node in self.nodes
            if include_silent or not node.silent
            for server in node.servers.values()
            if server.status.state == pb.SERVER_STATE_RUNNING
        )
