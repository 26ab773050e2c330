"""Validating a ServerSpec and turning it into a container to create.

The spec (without input files) travels with the container as the `encedeus.spec`
label, so a restarted agent knows every server's stop policy, health check and done
pattern without any state of its own.
"""

from __future__ import annotations

import base64
import re
from pathlib import Path, PurePosixPath

from agent.runtime import ContainerSpec, InvalidSpec, PortSpec
from protos import agent_pb2 as pb

MANAGED_LABEL = "encedeus.managed"
NODE_LABEL = "encedeus.node"
SERVER_LABEL = "encedeus.server"
SPEC_LABEL = "encedeus.spec"
MIN_MEMORY_BYTES = 6 * 1024 * 1024  # the engine refuses less
SERVER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
CONFIG_PARSERS = ("properties", "ini", "file", "yaml", "json")
SIGNAL = re.compile(r"^(SIG)?[A-Z0-9+-]{1,12}$|^[0-9]{1,2}$")
SHA256_HEX = re.compile(r"[0-9a-fA-F]{64}")


def container_name(server_id: str) -> str:
    return f"encedeus-{server_id}"


def encode_spec(spec: pb.ServerSpec) -> str:
    stored = pb.ServerSpec()
    stored.CopyFrom(spec)
    del stored.files[:]  # input files can be large; they are written once at create
    stored.ClearField("registry_auth")  # a secret: labels are readable by any engine user
    return base64.b64encode(stored.SerializeToString()).decode("ascii")


def decode_spec(value: str) -> pb.ServerSpec:
    spec = pb.ServerSpec()
    spec.ParseFromString(base64.b64decode(value))
    return spec


def validate_spec(spec: pb.ServerSpec, cpu_count: int, port_range: tuple[int, int]) -> None:
    """Raise InvalidSpec naming the first problem (id, image, limits, ports, paths)."""
    if not SERVER_ID.match(spec.id):
        raise InvalidSpec("id must be 1-63 characters of letters, digits, '_', '.', '-'")
    if spec.volume_id and not SERVER_ID.match(spec.volume_id):
        raise InvalidSpec("volume_id must be 1-63 characters of letters, digits, '_', '.', '-'")
    if not spec.image:
        raise InvalidSpec("image is required")
    resources = spec.resources
    if resources.memory_bytes and resources.memory_bytes < MIN_MEMORY_BYTES:
        raise InvalidSpec(f"memory_bytes must be 0 (unlimited) or at least {MIN_MEMORY_BYTES}")
    if 0 < resources.cpu_millis < 10:
        raise InvalidSpec("cpu_millis must be 0 (unlimited) or at least 10")
    if resources.cpu_millis > cpu_count * 1000:
        raise InvalidSpec(f"cpu_millis {resources.cpu_millis} exceeds this node's {cpu_count} CPUs")
    if spec.stop.signal and not SIGNAL.match(spec.stop.signal):
        raise InvalidSpec(f"unknown stop signal {spec.stop.signal!r}")
    if spec.done_pattern:
        try:
            re.compile(spec.done_pattern)
        except re.error as exc:
            raise InvalidSpec(f"done_pattern is not a valid regex: {exc}") from exc
    for path in (spec.data_mount_path, spec.working_dir):
        if path and not path.startswith("/"):
            raise InvalidSpec(f"{path!r} must be an absolute container path")
    seen: set[tuple[int, str]] = set()
    for port in spec.ports:
        protocol = port.protocol or "tcp"
        if protocol not in ("tcp", "udp"):
            raise InvalidSpec(f"port protocol must be tcp or udp, not {protocol!r}")
        if not 0 < port.container_port < 65536:
            raise InvalidSpec(f"container_port {port.container_port} is out of range")
        if port.host_port and not port_range[0] <= port.host_port <= port_range[1]:
            raise InvalidSpec(
                f"host_port {port.host_port} is outside the node's range "
                f"{port_range[0]}-{port_range[1]}"
            )
        if (port.host_port, protocol) in seen and port.host_port:
            raise InvalidSpec(f"host_port {port.host_port}/{protocol} is bound twice")
        seen.add((port.host_port, protocol))
    for item in spec.files:
        relative_file_path(item.path)
        if item.source and (item.content or not SHA256_HEX.fullmatch(item.sha256)):
            raise InvalidSpec(f"input file {item.path}: a source needs a sha256 and no content")
    if spec.HasField("install") and not (spec.install.image and spec.install.script):
        raise InvalidSpec("an install script needs an image and a script")
    for edit in spec.config_files:
        relative_file_path(edit.path)
        if edit.parser not in CONFIG_PARSERS:
            raise InvalidSpec(f"config file {edit.path}: unknown parser {edit.parser!r}")


def relative_file_path(path: str) -> PurePosixPath:
    """An input file's path, refused when it would leave the data directory."""
    relative = PurePosixPath(path)
    if not path or relative.is_absolute() or ".." in relative.parts:
        raise InvalidSpec(f"file path {path!r} must be relative and stay in the data directory")
    return relative


def container_spec(
    spec: pb.ServerSpec,
    *,
    labels: dict[str, str],
    data_dir: Path,
    user: str,
    default_pids: int,
    log_max_size: str,
    log_max_files: int,
) -> ContainerSpec:
    """The container for `spec` (ports already chosen), with `labels` added, running
    as `user` ("uid:gid")."""
    mount = spec.data_mount_path or "/data"
    all_labels = {**spec.labels, **labels, SERVER_LABEL: spec.id, SPEC_LABEL: encode_spec(spec)}
    return ContainerSpec(
        name=container_name(spec.id),
        image=spec.image,
        command=list(spec.command),
        env=dict(spec.env),
        ports=[
            PortSpec(p.container_port, p.host_port, p.protocol or "tcp", p.host_ip or "0.0.0.0")
            for p in spec.ports
        ],
        labels=all_labels,
        memory_bytes=spec.resources.memory_bytes,
        nano_cpus=spec.resources.cpu_millis * 1_000_000,
        pids_limit=spec.resources.pids_limit or default_pids,
        binds={str(data_dir): mount},
        working_dir=spec.working_dir or mount,
        user=user,
        network_disabled=spec.network_disabled,
        # Always open: proto3 cannot tell "false" from "unset", and the console needs it.
        open_stdin=True,
        log_max_size=log_max_size,
        log_max_files=log_max_files,
    )


def volume_name(spec: pb.ServerSpec) -> str:
    """The name of `spec`'s data directory and SFTP login: its slot's volume id, or the
    server id for specs that carry none (control planes before volume ids)."""
    return spec.volume_id or spec.id
