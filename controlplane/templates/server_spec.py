"""What a template-made deployment adds to the ServerSpec an agent creates."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from protos import agent_pb2 as pb


def apply_template_record(
    spec: pb.ServerSpec, record: Mapping[str, Any] | None, host_ports: Sequence[int]
) -> None:
    """Fill `spec` from the deployment's stored template record (None: no template):
    done pattern, data mount path, disk default, and the ports with their protocols.
    A container port of 0 means the host port it was given (the egg contract), and
    SERVER_PORT is the primary port inside the container."""
    if not record:
        return
    spec.done_pattern = str(record.get("done_pattern") or "")
    spec.data_mount_path = str(record.get("data_mount_path") or "")
    if record.get("disk_bytes") and not spec.resources.disk_bytes:
        spec.resources.disk_bytes = int(record["disk_bytes"])
    protocols: list[list[str]] = list(record.get("port_protocols") or [])
    bindings = []
    for index, port in enumerate(spec.ports):
        container = port.container_port or (host_ports[index] if index < len(host_ports) else 0)
        wanted = protocols[index] if index < len(protocols) else ["tcp"]
        bindings += [
            pb.PortBinding(
                container_port=container,
                host_port=port.host_port,
                protocol=protocol,
                host_ip=port.host_ip,
            )
            for protocol in wanted
        ]
    del spec.ports[:]
    spec.ports.extend(bindings)
    if bindings and "SERVER_PORT" not in spec.env:
        spec.env["SERVER_PORT"] = str(bindings[0].container_port)
