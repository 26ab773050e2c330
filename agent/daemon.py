"""Skyhook's composition root: build the parts, start them in order, stop in reverse.

Order: engine → fingerprint → container network → tracker (re-attaches to existing
containers) → HTTP (console and exec WebSockets, files, /health; https with
http.cert_file) → gRPC → SFTP (`agent/sftp/`).
Background loops live in one TaskGroup. Enrolment (no node secret yet) is the seam
in `load_or_enrol`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from agent import __version__
from agent.backups.restic import ResticRepository
from agent.backups.volume_backups import VolumeBackups
from agent.config import AgentConfig, NodeIdentity, load_identity
from agent.controlplane_client import HttpControlPlane
from agent.enrolment import enrol, local_http_url
from agent.files.ownership import disk_limit, file_owner, known_volume
from agent.fleet.data_dir import ServerVolumes
from agent.fleet.hub import WatchHub
from agent.fleet.image_gc import ImageCollector
from agent.fleet.inputs import InputSource, clear_staging
from agent.fleet.spec import MANAGED_LABEL, NODE_LABEL
from agent.fleet.supervisor import Supervisor
from agent.fleet.tracker import ServerTracker
from agent.ingress.caddy import CaddyProxy
from agent.ingress.caddy_config import CaddySettings
from agent.ingress.local_upstreams import follow_servers, published_ports
from agent.rpc.server import GrpcEndpoint, TlsFiles, start_grpc_server
from agent.rpc.servicer import AgentService, NodeFacts
from agent.runtime import ContainerRuntime, DockerRuntime
from agent.sdnotify import SystemdNotifier
from agent.sftp import SFTPService
from agent.stats.host import HostMonitor, NodeFingerprint, node_fingerprint
from agent.stats.sampler import StatsSampler
from agent.ws.server import HttpEndpoint, start_http_server
from common.cancellation import wait_set
from common.logging import get_logger
from protos import agent_pb2 as pb

log = get_logger(__name__)


@dataclass(slots=True)
class RunningAgent:
    """A started agent: what tests and the CLI need to reach it."""

    config: AgentConfig
    identity: NodeIdentity
    started_at: float
    supervisor: Supervisor
    grpc: GrpcEndpoint
    http: HttpEndpoint
    sftp: SFTPService | None = None
    backups: VolumeBackups | None = None


async def load_or_enrol(config: AgentConfig) -> NodeIdentity:
    """The stored node identity, or a new one from enrolment (see agent.enrolment)."""
    identity = await asyncio.to_thread(load_identity, config)
    if identity is None:
        return await enrol(config)  # raises ConfigError without URL + join token
    if config.join_token and not config.node_secret:
        # A token is used once; an operator who put a new one here most likely wants
        # to enrol again, which this agent will not do on its own.
        log.warning(
            "join_token_ignored",
            node_id=identity.node_id,
            hint=f"already enrolled; to enrol with the new token, delete {config.node_file}",
        )
    return identity


def identity_labels(identity: NodeIdentity) -> dict[str, str]:
    """The labels this node finds and watches its containers by. Not the configured
    ones: an operator may change those, and containers made before must still be found."""
    return {MANAGED_LABEL: "true", NODE_LABEL: identity.node_id}


def node_labels(config: AgentConfig, identity: NodeIdentity) -> dict[str, str]:
    """The labels every new container of this node carries."""
    return {**config.labels, **identity_labels(identity)}


def build_supervisor(
    config: AgentConfig,
    identity: NodeIdentity,
    runtime: ContainerRuntime,
    fingerprint: NodeFingerprint,
    volumes: ServerVolumes,
    inputs: InputSource | None = None,
) -> Supervisor:
    """The core: stats sampler, Watch hub, server tracker and the supervisor over them
    (fetching task input files from `inputs`)."""
    tracker = ServerTracker(
        runtime,
        StatsSampler(fingerprint.memory_bytes, config.disk_usage_interval_seconds),
        WatchHub(),
        labels=node_labels(config, identity),
        find_by=identity_labels(identity),
        volumes_dir=volumes.root,
        history_lines=config.console.history_lines,
    )
    return Supervisor(
        tracker,
        volumes,
        cpu_count=fingerprint.cpu_count,
        port_range=(config.port_range.start, config.port_range.end),
        default_pids=config.default_pids_limit,
        log_max_size=config.log_max_size,
        log_max_files=config.log_max_files,
        publish_address=config.publish_address,
        inputs=inputs,
    )


def backup_repository(config: AgentConfig, identity: NodeIdentity) -> ResticRepository:
    """The configured fleet repository, or this node's own under its data directory."""
    backups, data_dir = config.backups, Path(config.data_dir)
    if not backups.repository:
        return ResticRepository.of_node(data_dir, identity.node_id, backups.restic_binary)
    return ResticRepository(
        backups.repository,
        identity=ResticRepository.identity_of(backups.repository),
        cache_dir=data_dir / "restic-cache",
        password=backups.password,
        password_file=Path(backups.password_file) if backups.password_file else None,
        binary=backups.restic_binary,
        env=backups.env,
        options=backups.options,
    )


def ingress_proxy(config: AgentConfig, supervisor: Supervisor) -> CaddyProxy | None:
    """This node's Caddy when it has the ingress role; it dials this node's own
    replicas at their containers' addresses unless told not to."""
    ingress = config.ingress
    if not ingress.enabled:
        return None
    socket = ingress.admin_socket or str(config.ingress_dir / "admin.sock")
    settings = CaddySettings(
        admin_listen=f"unix/{socket}",
        http_port=ingress.http_port,
        https_port=ingress.https_port,
        storage_dir=ingress.storage_dir or str(config.ingress_dir / "tls"),
        bind_host=ingress.listen_host,
    )
    if not ingress.dial_containers:
        return CaddyProxy(ingress.caddy_binary, settings, config.ingress_dir)
    return CaddyProxy(
        ingress.caddy_binary,
        settings,
        config.ingress_dir,
        local_ports=lambda: published_ports(supervisor.servers.values()),
    )


def image_collector(config: AgentConfig, supervisor: Supervisor) -> ImageCollector:
    """Garbage collection of the images this node's servers no longer use."""
    return ImageCollector(
        supervisor.runtime,
        supervisor.images_in_use,
        Path(config.data_dir) / "image-usage.json",
        unused_seconds=config.image_gc.unused_seconds,
        protected=config.image_gc.protected,
    )


def build_service(
    config: AgentConfig,
    identity: NodeIdentity,
    supervisor: Supervisor,
    fingerprint: NodeFingerprint,
    started_at: float,
    ingress: CaddyProxy | None = None,
    http_url: str = "",
    backups: VolumeBackups | None = None,
) -> AgentService:
    facts = NodeFacts(
        node_id=identity.node_id,
        fingerprint=fingerprint,
        started_at_ms=int(started_at * 1000),
        port_range=(config.port_range.start, config.port_range.end),
        ingress=pb.IngressInfo(
            enabled=ingress is not None,
            http_port=config.ingress.http_port,
            https_port=config.ingress.https_port,
        ),
        publish_address=config.publish_address,
        http_url=http_url,
    )
    host = HostMonitor(Path(config.data_dir))
    supervisor.tracker.sampler.run_alongside(host.refresh_quietly)
    return AgentService(supervisor, supervisor.tracker.hub, host, facts, ingress, backups)


def tls_files(config: AgentConfig) -> TlsFiles | None:
    if not config.tls.enabled:
        return None
    client_ca = Path(config.tls.client_ca_file) if config.tls.client_ca_file else None
    return TlsFiles(Path(config.tls.cert_file), Path(config.tls.key_file), client_ca)


@contextlib.asynccontextmanager
async def running_agent(
    config: AgentConfig, identity: NodeIdentity, runtime: ContainerRuntime | None = None
) -> AsyncIterator[RunningAgent]:
    """Start every part of the agent; stop them in reverse order on exit."""
    started_at = time.time()
    # Building the Docker client reads config files: not on the loop.
    if runtime is None:
        runtime = await asyncio.to_thread(
            partial(
                DockerRuntime,
                threads=config.docker_threads,
                pull_stall_seconds=config.pull_stall_seconds,
            )
        )
    volumes = ServerVolumes(
        Path(config.data_dir),
        container_user=config.container_ids,
        id_mapping=await runtime.id_mapping(),
    )
    # Before the tracker re-attaches and anything can start a container.
    await asyncio.to_thread(volumes.restore)
    await asyncio.to_thread(clear_staging, volumes.agent_dir)
    fingerprint = await asyncio.to_thread(
        node_fingerprint,
        volumes.agent_dir,
        await runtime.version(),
        __version__,
        config.reserved.disk_bytes,
    )
    # Connects lazily; closed by the exit stack below.
    control_plane = HttpControlPlane(config.controlplane_url, identity.node_secret)
    inputs = control_plane if config.controlplane_url else None
    supervisor = build_supervisor(config, identity, runtime, fingerprint, volumes, inputs)
    ingress = ingress_proxy(config, supervisor)
    backups = VolumeBackups(supervisor, backup_repository(config, identity))
    try:
        # Before the tracker re-attaches: servers created from now on join this network.
        network = await runtime.use_network(config.network)
        log.info("container_network", network=config.network, id=network)
        # The exit stack stops whatever has started, in reverse order, also when a
        # later part fails to start; the TaskGroup then sees the tracker cancelled.
        async with asyncio.TaskGroup() as tasks, contextlib.AsyncExitStack() as stack:
            tracking = tasks.create_task(supervisor.tracker.run())
            stack.callback(tracking.cancel)
            stack.push_async_callback(supervisor.pulls.close)
            if config.image_gc.unused_seconds > 0:
                collecting = tasks.create_task(
                    image_collector(config, supervisor).run(config.image_gc.interval_seconds)
                )
                stack.callback(collecting.cancel)
            if ingress is not None:
                proxying = tasks.create_task(ingress.run())
                stack.callback(proxying.cancel)
                following = tasks.create_task(
                    follow_servers(supervisor.tracker.hub, ingress.refresh)
                )
                stack.callback(following.cancel)
            await supervisor.tracker.ready.wait()  # re-attached before anyone can ask
            stack.push_async_callback(control_plane.close)
            # Without a control plane (development, tests) exec ends go unreported.
            reporter = control_plane if config.controlplane_url else None
            # HTTP before gRPC: GetNodeInfo tells the URL of the bound HTTP port.
            http = await start_http_server(
                config, identity, supervisor, started_at, reporter, backups
            )
            stack.push_async_callback(http.stop)
            http_url = await asyncio.to_thread(local_http_url, config, http.port)
            service = build_service(
                config, identity, supervisor, fingerprint, started_at, ingress, http_url, backups
            )
            stack.callback(service.host.close)
            grpc = await start_grpc_server(
                service,
                secret=identity.node_secret,
                host=config.grpc.host,
                port=config.grpc.port,
                tls=tls_files(config),
            )
            stack.push_async_callback(grpc.stop)
            sftp = SFTPService(
                control_plane,
                data_dir=Path(config.data_dir),
                host=config.sftp.host,
                port=config.sftp.port,
                disk_limit_of=lambda server_id: disk_limit(supervisor, server_id),
                file_owner_of=lambda server_id: file_owner(supervisor, server_id),
                volume_of=lambda server_id: known_volume(supervisor, server_id),
            )
            await sftp.start()
            stack.push_async_callback(sftp.stop)
            # A server whose container is gone keeps no open file sessions.
            supervisor.tracker.on_removed(sftp.revoke)
            stack.callback(supervisor.tracker.hub.close)  # ends Watch streams at once
            log.info(
                "agent_started",
                node_id=identity.node_id,
                grpc=grpc.port,
                http=http.port,
                http_url=http_url,
                sftp=sftp.port,
            )
            yield RunningAgent(config, identity, started_at, supervisor, grpc, http, sftp, backups)
    finally:
        supervisor.tracker.sampler.close()
        await supervisor.installer.close()
        await runtime.close()


async def serve(config: AgentConfig, stop: asyncio.Event) -> None:
    """Run the agent until `stop` is set, talking to systemd when it supervises us."""
    identity = await load_or_enrol(config)
    notifier = SystemdNotifier()
    async with running_agent(config, identity) as agent, asyncio.TaskGroup() as tasks:
        # STATUS names the bound ports (they differ from the config when it says 0).
        notifier.notify(f"READY=1\nSTATUS=grpc={agent.grpc.port} http={agent.http.port}")
        if config.watchdog and notifier.watchdog_seconds:
            tasks.create_task(_watchdog(notifier, stop))
        await stop.wait()
        notifier.notify("STOPPING=1")
    log.info("agent_stopped")


async def _watchdog(notifier: SystemdNotifier, stop: asyncio.Event) -> None:
    # Sent from the event loop itself: a blocked loop misses it and systemd restarts us.
    while not stop.is_set():
        notifier.notify("WATCHDOG=1")
        await wait_set(stop, notifier.watchdog_seconds / 2)
