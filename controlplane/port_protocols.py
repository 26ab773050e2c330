"""The transport protocols of a deployment's ports.

A deployment stores its container ports (`ports`) and, at the same index, the
protocol each is published with (`port_protocols`): "tcp", "udp" or "tcp+udp" (one
host port published for both, as game servers want). A missing entry is "tcp": rows
and requests from before protocols existed (seed 004's plain integers) mean TCP.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from protos import agent_pb2 as pb

PortProtocol = Literal["tcp", "udp", "tcp+udp"]
TCP: PortProtocol = "tcp"


def protocol_at(protocols: Sequence[str], index: int) -> str:
    """The protocol of port `index` ("tcp" when none was stored)."""
    return protocols[index] if index < len(protocols) and protocols[index] else TCP


def carries_tcp(protocol: str) -> bool:
    """Whether a port of this protocol accepts TCP (what HTTP and health probes need)."""
    return protocol in ("tcp", "tcp+udp")


def port_bindings(
    ports: Sequence[int], protocols: Sequence[str], host_ports: Sequence[int]
) -> list[pb.PortBinding]:
    """The agent's bindings for container `ports` published on `host_ports`: one per
    port and transport protocol. A container port of 0 is the host port it was given
    (the egg contract of templates: host port = container port = SERVER_PORT)."""
    bindings: list[pb.PortBinding] = []
    for index, (container, host) in enumerate(zip(ports, host_ports, strict=False)):
        bindings += [
            pb.PortBinding(container_port=container or host, host_port=host, protocol=transport)
            for transport in protocol_at(protocols, index).split("+")
        ]
    return bindings
