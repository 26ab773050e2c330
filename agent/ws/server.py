"""The agent's HTTP port: `GET /health`, the browser console and exec WebSockets,
the file API, backup downloads and volumes streamed here by other agents (moves);
https and wss when the `http` block names a certificate, so that a panel served over
HTTPS may open them (browsers block ws:// from https:// pages)."""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from agent.backups.download import BackupDownloads
from agent.backups.volume_backups import VolumeBackups
from agent.config import AgentConfig, NodeIdentity
from agent.controlplane_client import ControlPlane
from agent.files.cors import FileCors
from agent.files.http_api import FileApi
from agent.files.ownership import disk_limit, file_owner, volume_of
from agent.fleet.supervisor import Supervisor
from agent.ws.console import ConsoleSockets
from agent.ws.exec import ExecSockets
from agent.ws.volume_receiver import VolumeReceiver
from common.config import ConfigError

SUPERVISOR = web.AppKey("supervisor", Supervisor)
SOCKETS = web.AppKey("console_sockets", ConsoleSockets)


@dataclass(slots=True)
class HttpEndpoint:
    """A started HTTP server and the port it is bound to."""

    runner: web.AppRunner
    port: int
    sockets: ConsoleSockets
    exec_sockets: ExecSockets

    async def stop(self) -> None:
        await self.sockets.close_all()
        await self.exec_sockets.close_all()
        await self.runner.cleanup()


async def health(request: web.Request) -> web.Response:
    supervisor = request.app[SUPERVISOR]
    return web.json_response({"status": "ok", "servers": len(supervisor.servers)})


def build_http_app(
    sockets: ConsoleSockets,
    supervisor: Supervisor,
    exec_sockets: ExecSockets,
    files: FileApi,
    downloads: BackupDownloads | None = None,
    transfers: VolumeReceiver | None = None,
) -> web.Application:
    app = web.Application(client_max_size=64 * 1024)
    app[SUPERVISOR] = supervisor
    app[SOCKETS] = sockets
    app.router.add_get("/health", health)
    app.router.add_get("/api/servers/{server_id}/ws", sockets.handle)
    app.router.add_get("/api/servers/{server_id}/exec", exec_sockets.handle)
    files.add_routes(app)
    if downloads is not None:
        downloads.add_routes(app)
    if transfers is not None:
        transfers.add_routes(app)
    FileCors(sockets.limits.ws_allowed_origins).install(app)
    return app


def server_tls_context(config: AgentConfig) -> ssl.SSLContext:
    """The HTTP port's TLS settings: the configured certificate chain and key, TLS
    1.2 at least (blocking: reads the files). ConfigError when they cannot be used."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(config.http.cert_file, config.http.key_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"agent.http cert_file {config.http.cert_file!r} / key_file "
            f"{config.http.key_file!r} cannot be used: {exc}"
        ) from exc
    return context


async def start_http_server(
    config: AgentConfig,
    identity: NodeIdentity,
    supervisor: Supervisor,
    started_at: float,
    control_plane: ControlPlane | None = None,
    backups: VolumeBackups | None = None,
) -> HttpEndpoint:
    """Serve the HTTP port (0 = any free port), over TLS when `http.cert_file` is set.
    Exec sessions report their end to `control_plane` (none: not reported); backups
    of `backups` are downloadable."""
    sockets = ConsoleSockets(config.console, identity, supervisor, started_at)
    exec_sockets = ExecSockets(config.console, identity, supervisor, started_at, control_plane)
    files = FileApi(
        identity,
        Path(config.data_dir),
        started_at,
        owner_of=lambda server_id: file_owner(supervisor, server_id),
        disk_limit_of=lambda server_id: disk_limit(supervisor, server_id),
        volume_of=lambda server_id: volume_of(supervisor, server_id),
    )
    transfers = VolumeReceiver(identity, supervisor.volumes, started_at, supervisor.volumes_in_use)
    await asyncio.to_thread(transfers.discard_leftovers)  # transfers cut off by a crash
    # A request body is buffered up to read_bufsize before the socket is paused: with
    # the default 64 KiB an upload pauses and resumes its socket every 128 KiB.
    runner = web.AppRunner(
        build_http_app(
            sockets,
            supervisor,
            exec_sockets,
            files,
            None if backups is None else BackupDownloads(identity, started_at, backups),
            transfers,
        ),
        access_log=None,
        read_bufsize=1024 * 1024,
    )
    await runner.setup()
    tls = await asyncio.to_thread(server_tls_context, config) if config.http.tls else None
    site = web.TCPSite(runner, config.http.host, config.http.port, ssl_context=tls)
    await site.start()
    port = config.http.port
    for address in runner.addresses:
        port = int(address[1])  # the bound port, also when 0 was asked for
        break
    return HttpEndpoint(runner=runner, port=port, sockets=sockets, exec_sockets=exec_sockets)
