"""Replicas on this very node, dialled at their container's address.

The control plane names every replica by its node's address and published host port
(`10.0.0.7:30012`): right for an ingress on another node. On the node that runs the
replica, that address leads through Docker's userland port proxy (`docker-proxy`, a
copy loop costing about 100 µs of CPU per request, bench/ingress.py) to the
container's own address on the bridge, which this node can dial directly. So the
agent rewrites an upstream that is one of its own published TCP ports to the
container's `ip:port` when it renders Caddy's config, and renders again whenever one
of its servers starts, exits or goes (a restarted container may get a new address).
Every other upstream is left as the control plane sent it.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from agent.fleet.hub import WatchHub
from agent.fleet.server import ManagedServer
from protos import agent_pb2 as pb

# A port published on every address answers on whichever one the upstream names.
ANY_ADDRESS = ("", "0.0.0.0", "::")


@dataclass(frozen=True, slots=True)
class PublishedPort:
    """A TCP port of one of this node's running containers: where Docker publishes it
    (`host_ip`:`host_port`) and where the container itself listens (`dial`)."""

    host_ip: str
    host_port: int
    dial: str  # "<container ip>:<container port>"


def published_ports(servers: Iterable[ManagedServer]) -> list[PublishedPort]:
    """The published TCP ports of the running servers that have a container address."""
    ports: list[PublishedPort] = []
    for server in servers:
        address = server.info.ip_address
        if not (server.info.running and address):
            continue
        ports.extend(
            PublishedPort(port.host_ip, port.host_port, f"{address}:{port.container_port}")
            for port in server.spec.ports
            if (port.protocol or "tcp") == "tcp" and port.host_port
        )
    return ports


def is_local_address(host: str) -> bool:
    """Whether `host` is an IP address of this machine (a name is never assumed to be).

    Binding a socket to it succeeds exactly then; no packet is sent."""
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.bind((str(ip), 0))
    except OSError:  # not ours, or no IPv6 on this host
        return False
    return True


def _split(address: str) -> tuple[str, int] | None:
    host, _, port = address.rpartition(":")
    return (host.strip("[]"), int(port)) if host and port.isdigit() else None


def direct_dials(
    table: pb.RouteTable,
    ports: Iterable[PublishedPort],
    is_local: Callable[[str], bool] = is_local_address,
) -> dict[str, str]:
    """Upstream address -> the container address to dial instead, for the upstreams of
    `table` that are `ports` of this machine (the published port's address, or any
    local address when it is published on all of them)."""
    by_port = {port.host_port: port for port in ports}
    dials: dict[str, str] = {}
    for route in table.routes:
        for upstream in route.upstreams:
            split = _split(upstream.address)
            if split is None or (port := by_port.get(split[1])) is None:
                continue
            host = split[0]
            if (port.host_ip in ANY_ADDRESS or port.host_ip == host) and is_local(host):
                dials[upstream.address] = port.dial
    return dials


async def follow_servers(hub: WatchHub, refresh: Callable[[], Awaitable[object]]) -> None:
    """Call `refresh` after every lifecycle event of this node's servers (a start may
    bring a new container address, an exit or removal takes one away), until
    cancelled. A subscription the hub drops is taken again, with a refresh."""
    while True:
        queue = hub.subscribe()
        try:
            subscribed = True
            while subscribed:
                event = await queue.get()
                # Events come in bursts (created, started, running): one refresh for
                # what is queued is enough.
                while event is not None and not queue.empty():
                    event = queue.get_nowait()
                subscribed = event is not None
                await refresh()
        finally:
            hub.unsubscribe(queue)
