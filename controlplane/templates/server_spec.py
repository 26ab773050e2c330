"""What a template-made deployment adds to the ServerSpec an agent creates."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from controlplane.templates.resolve import BIND_ADDRESS
from protos import agent_pb2 as pb

_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z0-9_.]+)\s*\}\}")


def apply_template_record(
    spec: pb.ServerSpec, record: Mapping[str, Any] | None, host_ports: Sequence[int]
) -> None:
    """Fill `spec` from the deployment's stored template record (None: no template):
    done pattern, data mount path, disk default, ports with their protocols, the
    install script and the config-file edits (placeholders rendered). A container port
    of 0 means the host port it was given (the egg contract), and SERVER_PORT is the
    primary port inside the container."""
    if not record:
        return
    spec.done_pattern = str(record.get("done_pattern") or "")
    spec.data_mount_path = str(record.get("data_mount_path") or "")
    if record.get("disk_bytes") and not spec.resources.disk_bytes:
        spec.resources.disk_bytes = int(record["disk_bytes"])
    _apply_ports(spec, list(record.get("port_protocols") or []), host_ports)
    install = record.get("install")
    if install:
        spec.install.CopyFrom(
            pb.InstallScript(
                image=str(install["image"]),
                entrypoint=str(install.get("entrypoint") or "sh"),
                script=str(install["script"]),
                network=bool(install.get("network")),
            )
        )
    for config in record.get("config_files") or []:
        values = {str(k): render(str(v), spec) for k, v in dict(config["set"]).items()}
        spec.config_files.append(
            pb.ConfigFileEdit(path=str(config["path"]), parser=str(config["parser"]), set=values)
        )


def _apply_ports(
    spec: pb.ServerSpec, protocols: list[list[str]], host_ports: Sequence[int]
) -> None:
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


def render(value: str, spec: pb.ServerSpec) -> str:
    """A config-file value with `{{server.port}}`, `{{server.ip}}`, `{{server.memory}}`
    and `{{env.NAME}}` replaced by this server's values."""
    builtins = {
        "server.port": spec.env.get("SERVER_PORT", ""),
        "server.ip": BIND_ADDRESS,
        "server.memory": str(spec.resources.memory_bytes // 2**20),
    }

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name.startswith("env."):
            return spec.env.get(name.removeprefix("env."), "")
        return builtins.get(name, match.group(0))

    return _PLACEHOLDER.sub(replace, value)
