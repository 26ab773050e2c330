"""The `encedeus.agent.v1.Agent` service: thin translation between gRPC and the
Supervisor. Runtime errors become statuses here (see docs/protocols/grpc.md)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
import grpc.aio

from agent.backups.restic import ResticError
from agent.backups.volume_backups import BackupUnreachable, NothingToBackUp, VolumeBackups
from agent.fleet.hub import WatchHub
from agent.fleet.inputs import InputUnavailable
from agent.fleet.install import InstallFailed
from agent.fleet.pulls import PendingPull
from agent.fleet.server import ManagedServer
from agent.fleet.server_stats import server_stats
from agent.fleet.supervisor import Supervisor
from agent.fleet.volume_deletion import VolumeInUse, delete_volume
from agent.ingress.caddy import CaddyProxy, IngressUnavailable
from agent.rpc import convert
from agent.rpc.heartbeat import ShownServers
from agent.rpc.volume_sending import TransferFailed, VolumeBusy, send_volume
from agent.runtime import (
    AlreadyExists,
    ContainerRuntimeError,
    ImageNotFound,
    InvalidSpec,
    NotFound,
    NotRunning,
)
from agent.runtime.images import (
    ImageUnknown,
    PullFailed,
    RegistryCredentials,
    RegistryDenied,
    RegistryUnreachable,
)
from agent.stats.host import HostMonitor, NodeFingerprint
from common.image_reference import InvalidReference, parse_image_reference
from common.logging import get_logger
from protos import agent_pb2 as pb
from protos import agent_pb2_grpc as pb_grpc

log = get_logger(__name__)
T = TypeVar("T")
Context = grpc.aio.ServicerContext[Any, Any]
STATUS_OF: list[tuple[type[Exception], grpc.StatusCode]] = [
    (InvalidSpec, grpc.StatusCode.INVALID_ARGUMENT),
    (AlreadyExists, grpc.StatusCode.ALREADY_EXISTS),
    (ImageNotFound, grpc.StatusCode.FAILED_PRECONDITION),
    (NotFound, grpc.StatusCode.NOT_FOUND),
    (NotRunning, grpc.StatusCode.FAILED_PRECONDITION),
    (InstallFailed, grpc.StatusCode.FAILED_PRECONDITION),
    (VolumeInUse, grpc.StatusCode.FAILED_PRECONDITION),
    (VolumeBusy, grpc.StatusCode.FAILED_PRECONDITION),
    (TransferFailed, grpc.StatusCode.ABORTED),
    (InputUnavailable, grpc.StatusCode.UNAVAILABLE),
    (TimeoutError, grpc.StatusCode.DEADLINE_EXCEEDED),
    (BackupUnreachable, grpc.StatusCode.FAILED_PRECONDITION),
    (NothingToBackUp, grpc.StatusCode.FAILED_PRECONDITION),
    (ResticError, grpc.StatusCode.INTERNAL),
    (ContainerRuntimeError, grpc.StatusCode.INTERNAL),
]


@dataclass(frozen=True, slots=True)
class NodeFacts:
    """Fixed facts about this node for GetNodeInfo."""

    node_id: str
    fingerprint: NodeFingerprint
    started_at_ms: int
    port_range: tuple[int, int]
    ingress: pb.IngressInfo | None = None
    publish_address: str = ""
    http_url: str = ""  # where browsers reach the HTTP port (agent.enrolment.http_url)


@contextlib.contextmanager
def _status_of_errors() -> Iterator[None]:
    """Translate the Supervisor's typed errors into a gRPC status for the caller."""
    try:
        yield
    except tuple(exc for exc, _ in STATUS_OF) as exc:
        code = next(code for kind, code in STATUS_OF if isinstance(exc, kind))
        message = str(exc) or type(exc).__name__
        raise _Abort(code, message) from exc


class _Abort(Exception):
    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


class AgentService(pb_grpc.AgentServicer):
    """Every rpc of protos/agent.proto."""

    def __init__(
        self,
        supervisor: Supervisor,
        hub: WatchHub,
        host: HostMonitor,
        facts: NodeFacts,
        ingress: CaddyProxy | None = None,
        backups: VolumeBackups | None = None,
    ) -> None:
        self.supervisor, self.hub, self.host, self.facts = supervisor, hub, host, facts
        self.ingress = ingress
        self.backups = backups

    async def _run(self, context: Context, operation: Awaitable[T]) -> T:
        try:
            with _status_of_errors():
                return await operation
        except _Abort as abort:
            log.info("rpc_refused", code=abort.code.name, message=abort.message)
            await context.abort(abort.code, abort.message)
            raise  # abort() raises; this line only satisfies the type checker

    async def _server(self, server_id: str) -> ManagedServer:
        return self.supervisor.get(server_id)

    async def GetNodeInfo(self, request: pb.GetNodeInfoRequest, context: Context) -> pb.NodeInfo:
        sample = await self.host.latest(0.5)
        return pb.NodeInfo(
            node_id=self.facts.node_id,
            fingerprint=convert.fingerprint(self.facts.fingerprint),
            host=convert.host_stats(sample),
            started_at_ms=self.facts.started_at_ms,
            port_range_start=self.facts.port_range[0],
            port_range_end=self.facts.port_range[1],
            ingress=self.facts.ingress,
            publish_address=self.facts.publish_address,
            http_url=self.facts.http_url,
            volumes=await asyncio.to_thread(self.supervisor.volumes.listing),
        )

    async def CreateServer(self, request: pb.CreateServerRequest, context: Context) -> pb.Server:
        operation = self.supervisor.submit(request.spec, start=request.start)
        server = await self._run(context, operation)
        return server.to_proto()

    async def RecreateServer(self, request: pb.CreateServerRequest, context: Context) -> pb.Server:
        operation = self.supervisor.submit(request.spec, start=request.start, replace=True)
        server = await self._run(context, operation)
        return server.to_proto()

    async def StartServer(self, request: pb.StartServerRequest, context: Context) -> pb.Server:
        server = await self._run(context, self.supervisor.start(request.id))
        return server.to_proto()

    async def StopServer(self, request: pb.StopServerRequest, context: Context) -> pb.Server:
        operation = self.supervisor.stop(request.id, request.timeout_seconds)
        server = await self._run(context, operation)
        return server.to_proto()

    async def RestartServer(self, request: pb.RestartServerRequest, context: Context) -> pb.Server:
        server = await self._run(context, self.supervisor.restart(request.id))
        return server.to_proto()

    async def KillServer(self, request: pb.KillServerRequest, context: Context) -> pb.Server:
        server = await self._run(context, self.supervisor.kill(request.id, request.signal))
        return server.to_proto()

    async def RemoveServer(
        self, request: pb.RemoveServerRequest, context: Context
    ) -> pb.RemoveServerResponse:
        operation = self.supervisor.remove(request.id, delete_data=request.delete_data)
        await self._run(context, operation)
        return pb.RemoveServerResponse(removed=True)

    async def ReinstallServer(
        self, request: pb.ReinstallServerRequest, context: Context
    ) -> pb.Server:
        server = await self._run(context, self.supervisor.reinstall(request.id))
        return server.to_proto()

    async def GetServer(self, request: pb.GetServerRequest, context: Context) -> pb.Server:
        server = await self._run(context, self._described(request.id))
        return server.to_proto()

    async def _described(self, server_id: str) -> ManagedServer | PendingPull:
        return self.supervisor.describe(server_id)

    async def ListServers(
        self, request: pb.ListServersRequest, context: Context
    ) -> pb.ListServersResponse:
        servers = self.supervisor.list_servers(dict(request.label_filter))
        return pb.ListServersResponse(servers=[s.to_proto() for s in servers])

    async def SendCommand(
        self, request: pb.SendCommandRequest, context: Context
    ) -> pb.SendCommandResponse:
        await self._run(context, self.supervisor.send_command(request.id, request.line))
        return pb.SendCommandResponse()

    async def GetLogs(
        self, request: pb.GetLogsRequest, context: Context
    ) -> AsyncIterator[pb.LogLine]:
        await self._run(context, self._server(request.id))
        async for line in self.supervisor.logs(request.id, request.tail, request.follow):
            yield convert.log_line(line)

    async def GetStats(self, request: pb.GetStatsRequest, context: Context) -> pb.ServerStats:
        server = await self._run(context, self._server(request.id))
        samples = await self.supervisor.tracker.sampler.latest(0.5)
        return server_stats(server, samples.get(request.id))

    async def ApplyRoutes(self, request: pb.RouteTable, context: Context) -> pb.ApplyRoutesResponse:
        if self.ingress is None:
            await context.abort(
                grpc.StatusCode.FAILED_PRECONDITION, "this node has no ingress role"
            )
            raise AssertionError("unreachable")  # abort() raises
        try:
            version = await self.ingress.apply(request)
        except IngressUnavailable as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
            raise
        return pb.ApplyRoutesResponse(version=version)

    async def Watch(
        self, request: pb.WatchRequest, context: Context
    ) -> AsyncIterator[pb.WatchEvent]:
        interval = max(request.heartbeat_interval_ms or 1000, 100) / 1000
        loop = asyncio.get_running_loop()
        queue = self.hub.subscribe()
        beats = ShownServers(omit_unchanged=request.omit_unchanged_servers)
        try:
            yield await self._heartbeat(interval, beats)
            next_beat = loop.time() + interval
            while True:
                remaining = next_beat - loop.time()
                if remaining <= 0:
                    yield await self._heartbeat(interval, beats)
                    next_beat = max(next_beat + interval, loop.time() + interval / 2)
                    continue
                try:
                    async with asyncio.timeout(remaining):
                        event = await queue.get()
                except TimeoutError:
                    continue
                if event is None:
                    return  # fell too far behind: the caller reconnects
                yield event
        finally:
            self.hub.unsubscribe(queue)

    async def CheckImage(
        self, request: pb.CheckImageRequest, context: Context
    ) -> pb.CheckImageResponse:
        timeout = (request.timeout_ms or DEFAULT_CHECK_MS) / 1000
        try:
            reference = parse_image_reference(request.image)
        except InvalidReference as exc:
            return _verdict(pb.IMAGE_AVAILABILITY_NOT_FOUND, f"{request.image!r}: {exc}")
        auth = request.registry_auth
        credentials = None
        if auth.username or auth.password:
            credentials = RegistryCredentials(auth.username, auth.password, auth.server_address)
        runtime = self.supervisor.runtime
        try:
            async with asyncio.timeout(timeout + 1):
                # Answer as a pull would: a local copy from a pull with other
                # credentials is not "present" to this caller; the registry decides.
                local = await runtime.local_image_digest(reference, request.image)
                use_local = local is not None and await self.supervisor.pulls.local_copy_allowed(
                    request.image, local, credentials
                )
                present = await runtime.check_image(
                    reference, request.image, credentials, timeout, use_local=use_local
                )
        except PullFailed as exc:
            return _verdict(_AVAILABILITY.get(exc.code, pb.IMAGE_AVAILABILITY_UNKNOWN), str(exc))
        except TimeoutError:
            return _verdict(
                pb.IMAGE_AVAILABILITY_UNREACHABLE, "the registry did not answer in time"
            )
        if present:
            return _verdict(pb.IMAGE_AVAILABILITY_PRESENT, "")
        return _verdict(pb.IMAGE_AVAILABILITY_PULLABLE, "")

    async def CreateBackup(
        self, request: pb.CreateBackupRequest, context: Context
    ) -> pb.BackupResult:
        backups = await self._volume_backups(context)
        return await self._run(context, backups.create(request))

    async def RestoreBackup(
        self, request: pb.RestoreBackupRequest, context: Context
    ) -> pb.RestoreBackupResponse:
        backups = await self._volume_backups(context)
        return await self._run(context, backups.restore(request))

    async def DeleteBackup(
        self, request: pb.DeleteBackupRequest, context: Context
    ) -> pb.DeleteBackupResponse:
        backups = await self._volume_backups(context)
        return await self._run(context, backups.delete(request))

    async def _volume_backups(self, context: Context) -> VolumeBackups:
        if self.backups is None:
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, "this agent takes no backups")
        assert self.backups is not None
        return self.backups

    async def DeleteVolume(
        self, request: pb.DeleteVolumeRequest, context: Context
    ) -> pb.DeleteVolumeResponse:
        in_use = self.supervisor.volumes_in_use()
        operation = delete_volume(self.supervisor.volumes, request.volume_id, in_use)
        return pb.DeleteVolumeResponse(deleted=await self._run(context, operation))

    async def SendVolume(
        self, request: pb.SendVolumeRequest, context: Context
    ) -> AsyncIterator[pb.TransferProgress]:
        progress = send_volume(self.supervisor, request)
        while True:
            try:
                with _status_of_errors():
                    message = await anext(progress)
            except StopAsyncIteration:
                return
            except _Abort as abort:
                log.info("rpc_refused", code=abort.code.name, message=abort.message)
                await context.abort(abort.code, abort.message)
                raise
            yield message

    async def _heartbeat(self, interval: float, beats: ShownServers) -> pb.WatchEvent:
        # Half the interval: consumers at the same rate share one sample.
        event = pb.WatchEvent()
        beat = event.heartbeat  # filled in place: copying 100 servers' messages costs
        await self.supervisor.add_stats(beat.stats, interval / 2)
        # After the containers: their sample's worker call refreshed the host's too
        # (StatsSampler.run_alongside), so this one usually takes no thread hop.
        convert.host_stats(await self.host.latest(interval / 2), beat.host)
        statuses = self.supervisor.statuses()
        if beats.unchanged(statuses):
            beat.servers_unchanged = True
        else:
            beat.servers.extend(statuses)
        beat.routes_version = 0 if self.ingress is None else self.ingress.routes_version
        return self.hub.stamp(event)


DEFAULT_CHECK_MS = 3000
_AVAILABILITY = {
    ImageUnknown.code: pb.IMAGE_AVAILABILITY_NOT_FOUND,
    RegistryDenied.code: pb.IMAGE_AVAILABILITY_DENIED,
    RegistryUnreachable.code: pb.IMAGE_AVAILABILITY_UNREACHABLE,
    PullFailed.code: pb.IMAGE_AVAILABILITY_UNKNOWN,
}


def _verdict(availability: pb.ImageAvailability.ValueType, message: str) -> pb.CheckImageResponse:
    return pb.CheckImageResponse(availability=availability, message=message[:1000])
