"""An in-memory Skyhook agent for the control plane's tests: :class:`FakeAgent`
implements :class:`controlplane.agents.client.AgentClient` (checked by mypy below and
by the shared contract in tests/controlplane/test_agent_client_contract.py, which runs
the same checks against a real agent on the real dockerd).

It records every call (``calls``: (method, server id)) and answers like an agent: a
created server runs at once, a stopped one is offline, a removed one is gone. The test
drives what a real host would do on its own: :meth:`FakeAgent.crash` (a container
exits), :attr:`FakeAgent.silent` (the node stops reporting: it is lost).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Mapping

from agent.rpc.heartbeat import ShownServers
from controlplane.agents.client import AgentClient, AgentError
from controlplane.agents.pool import NodeEndpoint
from protos import agent_pb2 as pb


def _now_ms() -> int:
    return int(time.time() * 1000)


class FakeAgent:
    """One simulated node's agent (see the module docstring)."""

    def __init__(self, node_id: str, *, port_range: tuple[int, int] = (30000, 30999)) -> None:
        self.node_id = node_id
        self.port_range = port_range
        self.servers: dict[str, pb.Server] = {}
        self.volumes: set[str] = set()
        """Volume ids of the data directories on this node (reported in NodeInfo)."""
        self.peers: dict[str, FakeAgent] = {}
        """Other fake agents by HTTP address, for SendVolume."""
        self.calls: list[tuple[str, str]] = []
        self.refusals: dict[str, AgentError] = {}
        """method name -> the error that call answers (e.g. an image it lacks)."""
        self.silent = False
        self.closed = False
        self.hold_creates: asyncio.Event | None = None
        """When set, CreateServer waits for this event before it creates anything (a
        create in flight: the server does not exist yet, RemoveServer answers
        not_found, as a real agent still pulling or creating does)."""
        self.create_entered = asyncio.Event()
        """Set when a CreateServer call has arrived."""
        self.snapshots: dict[str, pb.CreateBackupRequest] = {}
        """snapshot id -> the CreateBackup that made it (a backup is taken at once)."""
        self.restores: list[pb.RestoreBackupRequest] = []
        self.hold_deletes: asyncio.Event | None = None
        """When set, DeleteBackup waits for this event (a forget + prune in flight)."""
        self.delete_entered = asyncio.Event()
        self.hold_restores: asyncio.Event | None = None
        """When set, RestoreBackup waits for this event (a restore that takes long)."""
        self.restore_entered = asyncio.Event()
        self.repository = f"node:{node_id}"
        self.ingress = False
        """Whether the node has the ingress role (set before the pool connects)."""
        self.tables: list[pb.RouteTable] = []
        """Every routing table ApplyRoutes received, in order."""
        self.routes_version = 0
        self._changed = asyncio.Event()

    # ---- what the host does on its own -----------------------------------

    def crash(self, server_id: str, exit_code: int = 1) -> None:
        """The server's process exits without being asked to."""
        status = self.servers[server_id].status
        status.state = pb.SERVER_STATE_OFFLINE
        status.exited, status.exit_code = True, exit_code
        status.finished_at_ms = max(_now_ms(), status.started_at_ms + 1)
        self._changed.set()

    def running(self) -> set[str]:
        """Ids of the servers running now."""
        return {i for i, s in self.servers.items() if s.status.state == pb.SERVER_STATE_RUNNING}

    # ---- AgentClient -----------------------------------------------------

    def _record(self, method: str, server_id: str = "") -> None:
        if self.closed:
            raise AgentError("unavailable", "the client is closed")
        self.calls.append((method, server_id))
        refusal = self.refusals.get(method)
        if refusal is not None:
            raise refusal

    def _server(self, server_id: str) -> pb.Server:
        server = self.servers.get(server_id)
        if server is None:
            raise AgentError("not_found", f"no server {server_id}")
        return server

    def _copy(self, server: pb.Server) -> pb.Server:
        answer = pb.Server()
        answer.CopyFrom(server)
        return answer

    def _set_state(self, server: pb.Server, *, run: bool) -> None:
        status = server.status
        if run:
            status.state = pb.SERVER_STATE_RUNNING
            status.started_at_ms, status.exited = _now_ms(), False
        elif status.state != pb.SERVER_STATE_OFFLINE:
            status.state = pb.SERVER_STATE_OFFLINE
            status.exited, status.exit_code = True, 0
            status.finished_at_ms = max(_now_ms(), status.started_at_ms + 1)
        self._changed.set()

    async def get_node_info(self) -> pb.NodeInfo:
        self._record("GetNodeInfo")
        start, end = self.port_range
        volumes = [pb.VolumeInfo(id=v) for v in sorted(self.volumes)]
        info = pb.NodeInfo(
            node_id=self.node_id, port_range_start=start, port_range_end=end, volumes=volumes
        )
        info.ingress.enabled = self.ingress
        return info

    async def create_server(self, spec: pb.ServerSpec, *, start: bool) -> pb.Server:
        self._record("CreateServer", spec.id)
        self.create_entered.set()
        if self.hold_creates is not None:
            await self.hold_creates.wait()
        if spec.id in self.servers:
            raise AgentError("already_exists", f"server {spec.id} exists")
        status = pb.ServerStatus(
            id=spec.id,
            container_id=f"fake-{spec.id[:12]}",
            state=pb.SERVER_STATE_OFFLINE,
            created_at_ms=_now_ms(),
            labels=dict(spec.labels),
        )
        server = pb.Server(spec=spec, status=status)
        self.servers[spec.id] = server
        self.volumes.add(spec.volume_id or spec.id)
        self._set_state(server, run=start)
        return self._copy(server)

    async def recreate_server(self, spec: pb.ServerSpec, *, start: bool) -> pb.Server:
        self._record("RecreateServer", spec.id)
        old = self._server(spec.id)
        old.spec.CopyFrom(spec)
        old.status.labels.clear()
        old.status.labels.update(spec.labels)
        old.status.state = pb.SERVER_STATE_OFFLINE
        self._set_state(old, run=start)
        return self._copy(old)

    async def start_server(self, server_id: str) -> pb.Server:
        self._record("StartServer", server_id)
        server = self._server(server_id)
        if server.status.state != pb.SERVER_STATE_RUNNING:
            self._set_state(server, run=True)
        return self._copy(server)

    async def stop_server(self, server_id: str, timeout_seconds: int = 0) -> pb.Server:
        self._record("StopServer", server_id)
        server = self._server(server_id)
        self._set_state(server, run=False)
        return self._copy(server)

    async def restart_server(self, server_id: str) -> pb.Server:
        self._record("RestartServer", server_id)
        server = self._server(server_id)
        self._set_state(server, run=True)
        return self._copy(server)

    async def kill_server(self, server_id: str, signal: str = "") -> pb.Server:
        self._record("KillServer", server_id)
        server = self._server(server_id)
        self._set_state(server, run=False)
        server.status.exit_code = 137
        return self._copy(server)

    async def reinstall_server(self, server_id: str) -> pb.Server:
        self._record("ReinstallServer", server_id)
        server = self._server(server_id)
        self._set_state(server, run=False)
        server.status.install_state = "installed"
        return self._copy(server)

    async def remove_server(self, server_id: str, *, delete_data: bool = False) -> bool:
        self._record("RemoveServer", server_id)
        removed = self._server(server_id)
        del self.servers[server_id]
        if delete_data:
            self.volumes.discard(removed.spec.volume_id or server_id)
        self._changed.set()
        return True

    async def get_server(self, server_id: str) -> pb.Server:
        self._record("GetServer", server_id)
        return self._copy(self._server(server_id))

    async def list_servers(self, labels: Mapping[str, str]) -> list[pb.Server]:
        self._record("ListServers")
        return [
            self._copy(s)
            for s in self.servers.values()
            if all(s.spec.labels.get(k) == v for k, v in labels.items())
        ]

    async def send_command(self, server_id: str, line: str) -> None:
        self._record("SendCommand", server_id)
        if self._server(server_id).status.state != pb.SERVER_STATE_RUNNING:
            raise AgentError("failed_precondition", f"server {server_id} is not running")

    async def get_logs(
        self, server_id: str, *, tail: int, follow: bool
    ) -> AsyncIterator[pb.LogLine]:
        self._record("GetLogs", server_id)
        self._server(server_id)
        for text in ("fake output",)[-tail:] if tail else ("fake output",):
            yield pb.LogLine(text=text, stream="stdout")

    async def get_stats(self, server_id: str) -> pb.ServerStats:
        self._record("GetStats", server_id)
        server = self._server(server_id)
        return pb.ServerStats(id=server_id, state=server.status.state)

    async def watch(self, heartbeat_interval_ms: int) -> AsyncIterator[pb.WatchEvent]:
        self._record("Watch")
        interval = max(heartbeat_interval_ms, 10) / 1000
        seq = 0
        # As the agent does for the control plane's Watch (omit_unchanged_servers);
        # statuses here change in place, so their bytes are what was shown.
        shown = ShownServers(omit_unchanged=True)
        while True:
            if self.silent:
                await asyncio.sleep(interval)  # a lost node: the stream says nothing
                continue
            seq += 1
            self._changed.clear()
            statuses = [s.status for s in self.servers.values()]
            unchanged = shown.unchanged([s.SerializeToString(deterministic=True) for s in statuses])
            yield pb.WatchEvent(
                time_ms=_now_ms(),
                seq=seq,
                heartbeat=pb.Heartbeat(
                    servers=[] if unchanged else statuses,
                    servers_unchanged=unchanged,
                    routes_version=self.routes_version,
                ),
            )
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancel that
            # arrives as the wait ends, and the pool's close then waits forever.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):
                    await self._changed.wait()

    async def apply_routes(self, table: pb.RouteTable) -> int:
        if not self.ingress:
            raise AgentError("failed_precondition", "this node has no ingress role")
        self._record("ApplyRoutes")
        self.tables.append(table)
        self.routes_version = table.version
        return table.version

    async def check_image(
        self, image: str, auth: pb.RegistryAuth | None, timeout_ms: int
    ) -> pb.CheckImageResponse:
        self._record("CheckImage")
        return pb.CheckImageResponse(availability=pb.IMAGE_AVAILABILITY_PRESENT)

    async def create_backup(self, request: pb.CreateBackupRequest) -> pb.BackupResult:
        self._record("CreateBackup", request.server_id)
        self._server(request.server_id)
        snapshot = f"{len(self.snapshots) + 1:064x}"
        self.snapshots[snapshot] = request
        return pb.BackupResult(
            snapshot_id=snapshot,
            repository=self.repository,
            size_bytes=1024,
            files=1,
            checksum=f"sha256:{snapshot}",
            time_ms=_now_ms(),
        )

    async def restore_backup(self, request: pb.RestoreBackupRequest) -> pb.RestoreBackupResponse:
        self._record("RestoreBackup", request.server_id)
        server = self._server(request.server_id)
        self.restore_entered.set()
        if self.hold_restores is not None:
            await self.hold_restores.wait()
        if request.repository != self.repository or request.snapshot_id not in self.snapshots:
            raise AgentError("failed_precondition", "the backup is not in this node's repository")
        self.restores.append(request)
        return pb.RestoreBackupResponse(restarted=server.status.state == pb.SERVER_STATE_RUNNING)

    async def delete_backup(self, request: pb.DeleteBackupRequest) -> bool:
        self._record("DeleteBackup")
        self.delete_entered.set()
        if self.hold_deletes is not None:
            await self.hold_deletes.wait()
        if request.repository != self.repository:
            raise AgentError("failed_precondition", "the backup is not in this node's repository")
        self.snapshots.pop(request.snapshot_id, None)
        return True

    async def delete_volume(self, volume_id: str) -> bool:
        self._record("DeleteVolume", volume_id)
        if any((s.spec.volume_id or s.spec.id) == volume_id for s in self.servers.values()):
            raise AgentError("failed_precondition", f"volume {volume_id} is in use")
        held = volume_id in self.volumes
        self.volumes.discard(volume_id)
        return held

    async def send_volume(
        self, volume_id: str, target_address: str, token: str
    ) -> AsyncIterator[pb.TransferProgress]:
        """Hands the volume to the fake agent registered at `target_address` in
        :attr:`peers` (no data: fakes keep none)."""
        self._record("SendVolume", volume_id)
        if volume_id not in self.volumes:
            raise AgentError("not_found", f"no volume {volume_id}")
        target = self.peers.get(target_address)
        if target is None:
            raise AgentError("aborted", "the target agent cannot be reached")
        yield pb.TransferProgress(bytes_sent=1, volume_bytes=1)
        target.volumes.add(volume_id)
        yield pb.TransferProgress(bytes_sent=1, volume_bytes=1, done=True, sha256="0" * 64)

    async def close(self) -> None:
        self.closed = True


class FakeFleet:
    """The agents of every simulated node, handed to :class:`AgentPool` as its client
    factory (``AgentPool(client_factory=fleet.client_for)``)."""

    def __init__(self) -> None:
        self.agents: dict[str, FakeAgent] = {}
        self.addresses: dict[str, FakeAgent] = {}
        """The agents by HTTP address (SendVolume's target), shared as their `peers`."""

    def agent(self, node_id: str) -> FakeAgent:
        """The node's agent (made on first use)."""
        if node_id not in self.agents:
            self.agents[node_id] = FakeAgent(node_id)
            self.agents[node_id].peers = self.addresses
        return self.agents[node_id]

    def client_for(self, endpoint: NodeEndpoint) -> AgentClient:
        """A fresh connection to the node's agent (its servers survive reconnects)."""
        agent = self.agent(endpoint.node_id)
        agent.closed = False
        return agent

    def calls(self, method: str) -> list[tuple[str, str]]:
        """(node id, server id) of every `method` call made to any agent."""
        return [
            (node_id, server_id)
            for node_id, agent in self.agents.items()
            for name, server_id in agent.calls
            if name == method
        ]


def _checked(agent: FakeAgent) -> AgentClient:
    return agent  # mypy proves FakeAgent implements the AgentClient Protocol
