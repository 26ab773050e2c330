"""What a template-made deployment adds to the ServerSpec an agent creates."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from controlplane.templates.resolve import BIND_ADDRESS
from protos import agent_pb2 as pb

_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z0-9_.]+)\s*\}\}")


def apply_template_record(spec: pb.ServerSpec, record: Mapping[str, Any] | None) -> None:
    """Fill `spec` from the deployment's stored template record (None: no template):
    done pattern, data mount path, disk default (of rows made before it became the
    deployment's own `resources.disk`), the install script and the config-file edits
    (placeholders rendered). SERVER_PORT is the primary port inside the container
    (its ports, protocols included, are the deployment's own: port_bindings)."""
    if not record:
        return
    spec.done_pattern = str(record.get("done_pattern") or "")
    spec.data_mount_path = str(record.get("data_mount_path") or "")
    if record.get("disk_bytes") and not spec.resources.disk_bytes:
        spec.resources.disk_bytes = int(record["disk_bytes"])
    if spec.ports and "SERVER_PORT" not in spec.env:
        spec.env["SERVER_PORT"] = str(spec.ports[0].container_port)
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
