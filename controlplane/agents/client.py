"""Every call the control plane makes to a Skyhook agent, behind one Protocol.

:class:`GrpcAgentClient` is the real implementation: one gRPC channel to one agent,
the node secret sent as ``authorization: Bearer <secret>`` on every call, TLS when a
CA bundle is configured. gRPC failures surface as :class:`AgentError` with a stable
snake_case `code` (``not_found``, ``already_exists``, ``failed_precondition``,
``invalid_argument``, ``unavailable``, ``deadline_exceeded``, ``unauthenticated``, ...).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any, Protocol

import grpc
import grpc.aio

from protos import agent_pb2 as pb
from protos import agent_pb2_grpc as pb_grpc

DEFAULT_TIMEOUT = 15.0
# Calls that may stop a container wait for its stop command or signal first: up to the
# longest stop timeout a deployment may have (the agent kills it after that).
MAX_STOP_SECONDS = 3600
STOPPING_CALLS = frozenset(
    {"StopServer", "RestartServer", "RemoveServer", "RecreateServer", "ReinstallServer"}
)
# restic reads or writes a whole volume: the calls wait as long as a backup may take.
BACKUP_SECONDS = 6 * 3600
BACKUP_CALLS = frozenset({"CreateBackup", "RestoreBackup", "DeleteBackup"})
# A CreateServer whose input files the agent fetches first (task inputs, up to GiBs)
# may take as long as they need at no less than this rate, beyond the usual deadline.
MIN_INPUT_BYTES_PER_SECOND = 16 * 1024 * 1024


def input_fetch_seconds(spec: pb.ServerSpec) -> float:
    """The time `spec`'s fetched input files may take to arrive on the node."""
    return sum(item.size for item in spec.files if item.source) / MIN_INPUT_BYTES_PER_SECOND


class AgentError(Exception):
    """An agent call failed; `code` is the gRPC status in snake_case."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class AgentClient(Protocol):
    """One agent as the control plane sees it. Every method raises AgentError on
    failure; none blocks the event loop."""

    async def get_node_info(self) -> pb.NodeInfo:
        """Identity, fingerprint, host stats and port range of the node."""

    async def create_server(self, spec: pb.ServerSpec, *, start: bool) -> pb.Server:
        """Create a server (ALREADY_EXISTS when the id is taken), optionally start it."""

    async def recreate_server(self, spec: pb.ServerSpec, *, start: bool) -> pb.Server:
        """Replace the server's container with one of `spec`, keeping its data; a spec
        the create would refuse leaves the old one running. `unimplemented` from
        agents that predate it."""

    async def start_server(self, server_id: str) -> pb.Server:
        """Start a stopped server."""

    async def stop_server(self, server_id: str, timeout_seconds: int = 0) -> pb.Server:
        """Stop with the spec's command or signal; kill after the timeout."""

    async def restart_server(self, server_id: str) -> pb.Server:
        """Stop (gracefully) and start again."""

    async def reinstall_server(self, server_id: str) -> pb.Server:
        """Stop the server and run its template's install script again."""

    async def kill_server(self, server_id: str, signal: str = "") -> pb.Server:
        """Send a signal (default SIGKILL)."""

    async def remove_server(self, server_id: str, *, delete_data: bool = False) -> bool:
        """Remove the container (stopping it first); optionally its data directory."""

    async def get_server(self, server_id: str) -> pb.Server:
        """Spec and status of one server."""

    async def list_servers(self, labels: Mapping[str, str]) -> list[pb.Server]:
        """Every server carrying all of `labels`."""

    async def send_command(self, server_id: str, line: str) -> None:
        """Write one line to the server's stdin."""

    def get_logs(self, server_id: str, *, tail: int, follow: bool) -> AsyncIterator[pb.LogLine]:
        """The last `tail` lines, then (with follow) new ones until cancelled."""

    async def get_stats(self, server_id: str) -> pb.ServerStats:
        """Current resource use of one server."""

    def watch(self, heartbeat_interval_ms: int) -> AsyncIterator[pb.WatchEvent]:
        """Heartbeats and lifecycle events until the stream breaks (AgentError)."""

    async def apply_routes(self, table: pb.RouteTable) -> int:
        """Ingress nodes: serve `table`; the version applied."""
        ...

    async def check_image(
        self, image: str, auth: pb.RegistryAuth | None, timeout_ms: int
    ) -> pb.CheckImageResponse:
        """Whether the node has `image` or its registry serves it with `auth` (the
        registry's answer bounded by `timeout_ms`); `unimplemented` from older agents."""

    async def create_backup(self, request: pb.CreateBackupRequest) -> pb.BackupResult:
        """Snapshot a server's volume with restic (console commands around it); answers
        once it is written. `failed_precondition` for an empty volume."""

    async def restore_backup(self, request: pb.RestoreBackupRequest) -> pb.RestoreBackupResponse:
        """Put a snapshot back into the server's volume (stopped meanwhile, started
        again when it ran). `failed_precondition` when the snapshot's repository is
        not the node's."""

    async def delete_backup(self, request: pb.DeleteBackupRequest) -> bool:
        """Forget the snapshot and prune its data."""

    async def delete_volume(self, volume_id: str) -> bool:
        """Delete a volume's data on the node (False: it held none); `failed_precondition`
        while a server there uses it, `unimplemented` from older agents."""

    def send_volume(
        self, volume_id: str, target_address: str, token: str
    ) -> AsyncIterator[pb.TransferProgress]:
        """Stream a stopped volume to the agent at `target_address` (its HTTP port) with
        a transfer `token` signed for it: progress, then done with the digest the target
        checked. `aborted` when the target refused or the stream broke."""

    async def close(self) -> None:
        """Close the channel; further calls fail."""


def _error(exc: grpc.aio.AioRpcError) -> AgentError:
    code = exc.code()
    name = code.name.lower() if code is not None else "unknown"
    return AgentError(name, exc.details() or name)


class GrpcAgentClient:
    """:class:`AgentClient` over one grpc.aio channel to `address` ("host:port")."""

    def __init__(
        self,
        address: str,
        secret: str,
        *,
        root_certificates: bytes | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        options = [("grpc.keepalive_time_ms", 10_000), ("grpc.keepalive_timeout_ms", 5_000)]
        if root_certificates is not None:
            credentials = grpc.ssl_channel_credentials(root_certificates=root_certificates)
            self._channel = grpc.aio.secure_channel(address, credentials, options=options)
        else:
            self._channel = grpc.aio.insecure_channel(address, options=options)
        self._stub = pb_grpc.AgentStub(self._channel)
        self._metadata = (("authorization", f"Bearer {secret}"),)
        self._timeout = timeout
        self.address = address

    async def _streamed(self, method: str, request: object) -> AsyncIterator[Any]:
        """The messages of server-streaming call `method`, failures as AgentError; the
        call is cancelled when the caller stops reading."""
        call = getattr(self._stub, method)(request, metadata=self._metadata)
        try:
            async for message in call:
                yield message
        except grpc.aio.AioRpcError as exc:
            raise _error(exc) from exc
        finally:
            call.cancel()

    async def _unary(self, method: str, request: object, extra_seconds: float = 0.0) -> object:
        call = getattr(self._stub, method)
        timeout = self._timeout + (MAX_STOP_SECONDS if method in STOPPING_CALLS else 0)
        timeout += extra_seconds + (BACKUP_SECONDS if method in BACKUP_CALLS else 0)
        try:
            return await call(request, metadata=self._metadata, timeout=timeout)
        except grpc.aio.AioRpcError as exc:
            raise _error(exc) from exc

    async def get_node_info(self) -> pb.NodeInfo:
        result = await self._unary("GetNodeInfo", pb.GetNodeInfoRequest())
        assert isinstance(result, pb.NodeInfo)
        return result

    async def create_server(self, spec: pb.ServerSpec, *, start: bool) -> pb.Server:
        request = pb.CreateServerRequest(spec=spec, start=start)
        return await self._server("CreateServer", request, input_fetch_seconds(spec))

    async def recreate_server(self, spec: pb.ServerSpec, *, start: bool) -> pb.Server:
        request = pb.CreateServerRequest(spec=spec, start=start)
        return await self._server("RecreateServer", request)

    async def start_server(self, server_id: str) -> pb.Server:
        return await self._server("StartServer", pb.StartServerRequest(id=server_id))

    async def stop_server(self, server_id: str, timeout_seconds: int = 0) -> pb.Server:
        request = pb.StopServerRequest(id=server_id, timeout_seconds=timeout_seconds)
        return await self._server("StopServer", request)

    async def restart_server(self, server_id: str) -> pb.Server:
        return await self._server("RestartServer", pb.RestartServerRequest(id=server_id))

    async def reinstall_server(self, server_id: str) -> pb.Server:
        return await self._server("ReinstallServer", pb.ReinstallServerRequest(id=server_id))

    async def kill_server(self, server_id: str, signal: str = "") -> pb.Server:
        return await self._server("KillServer", pb.KillServerRequest(id=server_id, signal=signal))

    async def get_server(self, server_id: str) -> pb.Server:
        return await self._server("GetServer", pb.GetServerRequest(id=server_id))

    async def _server(self, method: str, request: object, extra_seconds: float = 0.0) -> pb.Server:
        result = await self._unary(method, request, extra_seconds)
        assert isinstance(result, pb.Server)
        return result

    async def remove_server(self, server_id: str, *, delete_data: bool = False) -> bool:
        request = pb.RemoveServerRequest(id=server_id, delete_data=delete_data)
        result = await self._unary("RemoveServer", request)
        assert isinstance(result, pb.RemoveServerResponse)
        return result.removed

    async def list_servers(self, labels: Mapping[str, str]) -> list[pb.Server]:
        result = await self._unary("ListServers", pb.ListServersRequest(label_filter=labels))
        assert isinstance(result, pb.ListServersResponse)
        return list(result.servers)

    async def send_command(self, server_id: str, line: str) -> None:
        await self._unary("SendCommand", pb.SendCommandRequest(id=server_id, line=line))

    async def apply_routes(self, table: pb.RouteTable) -> int:
        result = await self._unary("ApplyRoutes", table)
        assert isinstance(result, pb.ApplyRoutesResponse)
        return result.version

    async def get_stats(self, server_id: str) -> pb.ServerStats:
        result = await self._unary("GetStats", pb.GetStatsRequest(id=server_id))
        assert isinstance(result, pb.ServerStats)
        return result

    async def check_image(
        self, image: str, auth: pb.RegistryAuth | None, timeout_ms: int
    ) -> pb.CheckImageResponse:
        request = pb.CheckImageRequest(image=image, registry_auth=auth, timeout_ms=timeout_ms)
        result = await self._unary("CheckImage", request)
        assert isinstance(result, pb.CheckImageResponse)
        return result

    async def create_backup(self, request: pb.CreateBackupRequest) -> pb.BackupResult:
        result = await self._unary("CreateBackup", request)
        assert isinstance(result, pb.BackupResult)
        return result

    async def restore_backup(self, request: pb.RestoreBackupRequest) -> pb.RestoreBackupResponse:
        result = await self._unary("RestoreBackup", request)
        assert isinstance(result, pb.RestoreBackupResponse)
        return result

    async def delete_backup(self, request: pb.DeleteBackupRequest) -> bool:
        result = await self._unary("DeleteBackup", request)
        assert isinstance(result, pb.DeleteBackupResponse)
        return result.deleted

    async def delete_volume(self, volume_id: str) -> bool:
        result = await self._unary("DeleteVolume", pb.DeleteVolumeRequest(volume_id=volume_id))
        assert isinstance(result, pb.DeleteVolumeResponse)
        return result.deleted

    async def get_logs(
        self, server_id: str, *, tail: int, follow: bool
    ) -> AsyncIterator[pb.LogLine]:
        request = pb.GetLogsRequest(id=server_id, tail=tail, follow=follow)
        async for line in self._streamed("GetLogs", request):
            yield line

    async def send_volume(
        self, volume_id: str, target_address: str, token: str
    ) -> AsyncIterator[pb.TransferProgress]:
        request = pb.SendVolumeRequest(
            volume_id=volume_id, target_address=target_address, token=token
        )
        async for progress in self._streamed("SendVolume", request):
            yield progress

    async def watch(self, heartbeat_interval_ms: int) -> AsyncIterator[pb.WatchEvent]:
        request = pb.WatchRequest(
            heartbeat_interval_ms=heartbeat_interval_ms, omit_unchanged_servers=True
        )
        async for event in self._streamed("Watch", request):
            yield event

    async def close(self) -> None:
        await self._channel.close(None)
