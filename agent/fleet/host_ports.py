"""Host ports for a server's published ports: free ones from the node's range."""

from __future__ import annotations

import socket

from agent.runtime import InvalidSpec
from protos import agent_pb2 as pb


def port_is_free(host_ip: str, port: int, protocol: str) -> bool:
    """Whether `port` can be bound on `host_ip` now (blocking)."""
    kind = socket.SOCK_DGRAM if protocol == "udp" else socket.SOCK_STREAM
    family = socket.AF_INET6 if ":" in host_ip else socket.AF_INET
    with socket.socket(family, kind) as probe:
        try:
            probe.bind((host_ip or "0.0.0.0", port))
        except OSError:
            return False
    return True


def choose_host_ports(
    spec: pb.ServerSpec, taken: set[int], port_range: tuple[int, int], publish_address: str
) -> None:
    """Give every port of `spec` without a host IP `publish_address`, and every one
    without a host port a free one from `port_range` not in `taken` (blocking).
    InvalidSpec when the range has none left."""
    taken |= {p.host_port for p in spec.ports}
    for port in spec.ports:
        if not port.host_ip and publish_address:
            port.host_ip = publish_address
    for port in spec.ports:
        if port.host_port:
            continue
        for candidate in range(port_range[0], port_range[1] + 1):
            if candidate not in taken and port_is_free(
                port.host_ip or "0.0.0.0", candidate, port.protocol or "tcp"
            ):
                port.host_port = candidate
                taken.add(candidate)
                break
        else:
            raise InvalidSpec("no free host port left in the node's port range")
