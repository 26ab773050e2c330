"""The routing table, decided without I/O from rows and the agents' observations."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from controlplane.config import ControlPlaneConfig
from controlplane.db.tables.orchestration import Deployment, Replica
from controlplane.port_protocols import carries_tcp, protocol_at
from controlplane.reconciler.world import observed_server
from protos import agent_pb2 as pb

DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True, slots=True)
class NodeReach:
    """How an ingress reaches one node's published ports, and which replicas it
    reports ready there (`ready` holds replica ids)."""

    address: str
    ready: frozenset[str]


def node_reach(
    grpc_address: str, info: pb.NodeInfo | None, servers: Iterable[pb.ServerStatus]
) -> NodeReach:
    """The node's publish address (else the host of its gRPC address) and its ready
    replicas."""
    address = info.publish_address if info is not None and info.publish_address else ""
    if not address or address in ("0.0.0.0", "::"):
        address = urlsplit(f"//{grpc_address}").hostname or "127.0.0.1"
    ready = frozenset(s.id for s in servers if observed_server(s).ready)
    return NodeReach(address=address, ready=ready)


def app_host(app_name: str, suffix: str) -> str:
    return f"{app_name}.{suffix}".lower()


def app_url(config: ControlPlaneConfig, app_name: str) -> str | None:
    """The URL the ingress really serves `app_name` at (None without a suffix)."""
    if not config.domain_suffix:
        return None
    scheme = "http" if config.ingress_tls == "off" else "https"
    port = config.ingress_public_port
    shown = f":{port}" if port and port != DEFAULT_PORTS[scheme] else ""
    return f"{scheme}://{app_host(app_name, config.domain_suffix)}{shown}"


def web_port_index(deployment: Deployment) -> int | None:
    """Which of the deployment's ports is the web one: `http_port` when set (and
    listed, and TCP), else the first TCP one; None without a TCP port."""
    tcp = [
        index
        for index in range(len(deployment.ports))
        if carries_tcp(protocol_at(deployment.port_protocols, index))
    ]
    wanted = deployment.http_port
    for index in tcp:
        if wanted and deployment.ports[index] == wanted:
            return index
    return tcp[0] if tcp else None


def _upstream(replica: Replica, index: int, nodes: Mapping[str, NodeReach]) -> pb.Upstream | None:
    if replica.node_id is None or index >= len(replica.host_ports):
        return None
    reach = nodes.get(str(replica.node_id))
    if reach is None or str(replica.id) not in reach.ready:
        return None
    host = f"[{reach.address}]" if ":" in reach.address else reach.address
    return pb.Upstream(address=f"{host}:{replica.host_ports[index]}")


def build_routes(
    deployments: Iterable[Deployment],
    replicas: Iterable[Replica],
    nodes: Mapping[str, NodeReach],
    *,
    suffix: str,
    tls: bool,
    domains: Mapping[str, list[str]] | None = None,
) -> list[pb.Route]:
    """One route per web deployment (one with ports): its host under `suffix` plus its
    verified `domains` (by deployment id), to the web port of each ready replica.
    Two owners' apps of one name share a host: the older deployment keeps it."""
    by_deployment: dict[str, list[Replica]] = {}
    for replica in replicas:
        by_deployment.setdefault(str(replica.deployment_id), []).append(replica)
    taken: set[str] = set()
    routes: list[pb.Route] = []
    for deployment in sorted(deployments, key=lambda d: (d.created_at, str(d.id))):
        index = web_port_index(deployment)
        if index is None:
            continue
        hosts = [app_host(deployment.app_name, suffix)] if suffix else []
        hosts += (domains or {}).get(str(deployment.id), [])
        hosts = [h for h in hosts if h not in taken]
        taken.update(hosts)
        own = sorted(by_deployment.get(str(deployment.id), []), key=lambda r: r.ordinal)
        upstreams = [u for r in own if (u := _upstream(r, index, nodes)) is not None]
        routes.append(
            pb.Route(
                id=str(deployment.id),
                hosts=hosts,
                upstreams=upstreams,
                stopped=not deployment.running,
                tls=tls,
            )
        )
    return routes
