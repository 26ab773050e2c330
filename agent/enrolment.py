"""First start of a node: enrol with the control plane and keep the identity.

With `controlplane_url` and `join_token` set and no stored identity, the agent sends
its addresses and fingerprint to `POST /v1/nodes/enroll` and writes the node id and
secret it gets back to the node secret file (mode 0600), so a restart never enrols
again (the token works only once anyway).
"""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

from agent import __version__
from agent.config import AgentConfig, HttpListen, Listen, NodeIdentity, store_identity
from agent.controlplane_client import ControlPlane, HttpControlPlane
from agent.runtime import DockerRuntime
from agent.stats.host import node_fingerprint
from common.config import ConfigError
from common.host_address import is_wildcard, primary_address, url_host
from common.logging import get_logger

log = get_logger(__name__)


def advertised(listen: Listen, advertise_host: str = "") -> str:
    """`host:port` the control plane can dial: `advertise_host` when set, else the
    listen host, and loopback for a wildcard bind."""
    if listen.port == 0:
        raise ConfigError("enrolment needs fixed ports: set agent grpc/http/sftp port")
    host = advertise_host or ("127.0.0.1" if is_wildcard(listen.host) else listen.host)
    return f"{url_host(host)}:{listen.port}"


def http_url(
    listen: HttpListen, port: int, advertise_host: str = "", primary: str | None = None
) -> str:
    """The URL browsers reach the HTTP port at (what the control plane hands out for
    the console, exec and file transfers): `public_url` when set, else https or http
    (TLS configured or not), `advertise_host` or the listen host, and `port`. A
    wildcard listen with no advertised host uses `primary`, the host's primary
    address (loopback when it has none): never 127.0.0.1 when another is known."""
    if listen.public_url:
        return listen.public_url.rstrip("/")
    scheme = "https" if listen.tls else "http"
    host = advertise_host or listen.host
    if is_wildcard(host):
        host = primary or "127.0.0.1"
    return f"{scheme}://{url_host(host)}:{port}"


def local_http_url(config: AgentConfig, port: int) -> str:
    """http_url for this host (blocking: may read the routing table)."""
    needs_primary = not (config.http.public_url or config.advertise_host)
    primary = primary_address() if needs_primary and is_wildcard(config.http.host) else None
    return http_url(config.http, port, config.advertise_host, primary)


async def registration(config: AgentConfig) -> dict[str, object]:
    """What the agent tells the control plane about itself."""
    if config.http.port == 0:
        raise ConfigError("enrolment needs fixed ports: set agent grpc/http/sftp port")
    runtime = DockerRuntime(threads=2)
    try:
        docker_version = await runtime.version()
    finally:
        await runtime.close()
    fingerprint = await asyncio.to_thread(
        node_fingerprint,
        Path(config.data_dir),
        docker_version,
        __version__,
        config.reserved.disk_bytes,
    )
    return {
        "grpc_address": advertised(config.grpc, config.advertise_host),
        "http_address": await asyncio.to_thread(local_http_url, config, config.http.port),
        "sftp_address": advertised(config.sftp, config.advertise_host),
        "fingerprint": dataclasses.asdict(fingerprint),
        "port_range_start": config.port_range.start,
        "port_range_end": config.port_range.end,
    }


async def enrol(config: AgentConfig, control_plane: ControlPlane | None = None) -> NodeIdentity:
    """Enrol with the join token and persist the identity; ConfigError when the
    config lacks the control plane URL or the token."""
    if not (config.controlplane_url and config.join_token):
        raise ConfigError(
            "no node identity: set agent.controlplane_url and agent.join_token to enrol, "
            f"or provide the node secret file {config.node_file}"
        )
    client = control_plane or HttpControlPlane(config.controlplane_url, "")
    try:
        node_id, secret = await client.enroll(config.join_token, await registration(config))
    finally:
        if control_plane is None:
            await client.close()
    identity = NodeIdentity(node_id=node_id, node_secret=secret)
    await asyncio.to_thread(store_identity, config, identity)
    log.info("node_enrolled", node_id=node_id)
    return identity
