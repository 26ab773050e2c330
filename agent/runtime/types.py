"""Plain data exchanged with the container runtime, and its typed errors."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple


class ContainerRuntimeError(Exception):
    """Base of every runtime error; the message is fit for a client."""


class ImageNotFound(ContainerRuntimeError):
    """The image is not present on this node (and may not be pulled here)."""

    @classmethod
    def of(cls, image: str) -> ImageNotFound:
        """The refusal for `image`, in the words every caller sees."""
        return cls(f"image {image!r} is not present on this node")


class AlreadyExists(ContainerRuntimeError):
    """A container with that name already exists."""


class NotFound(ContainerRuntimeError):
    """No such container."""


class NotRunning(ContainerRuntimeError):
    """The operation needs a running container."""


class InvalidSpec(ContainerRuntimeError):
    """The engine refused the container's configuration."""


@dataclass(frozen=True, slots=True)
class PortSpec:
    """One published port."""

    container_port: int
    host_port: int
    protocol: str = "tcp"
    host_ip: str = "0.0.0.0"


@dataclass(frozen=True, slots=True)
class ContainerSpec:
    """Everything needed to create one container; limits of 0 mean unlimited."""

    name: str
    image: str
    command: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    ports: list[PortSpec] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    memory_bytes: int = 0
    nano_cpus: int = 0
    pids_limit: int = 512
    binds: dict[str, str] = field(default_factory=dict)  # host path -> container path
    working_dir: str = ""
    # "uid:gid" the container's processes run as; empty: the image's own user.
    user: str = ""
    network_disabled: bool = False
    open_stdin: bool = True
    log_max_size: str = "10m"
    log_max_files: int = 3


@dataclass(frozen=True, slots=True)
class IdMapping:
    """How the engine maps a container's uids and gids to the host's.

    Identity (offsets 0) unless the daemon remaps user namespaces (`userns-remap`),
    which it does for every container alike: then container id N is host id
    `offset + N`. `remapped` says whether the daemon remaps at all.
    """

    uid_offset: int = 0
    gid_offset: int = 0
    remapped: bool = False

    def host_ids(self, uid: int, gid: int) -> tuple[int, int]:
        """The host uid and gid of container ids `uid`, `gid`."""
        return self.uid_offset + uid, self.gid_offset + gid


@dataclass(frozen=True, slots=True)
class ContainerInfo:
    """What the engine says about one container; times in ms since the epoch, 0 = never."""

    id: str
    name: str
    labels: dict[str, str]
    status: str  # created | running | paused | restarting | exited | dead | removing
    pid: int
    created_at_ms: int
    started_at_ms: int
    finished_at_ms: int
    exit_code: int
    oom_killed: bool
    ip_address: str
    memory_limit_bytes: int

    @property
    def running(self) -> bool:
        return self.status in ("running", "paused", "restarting")

    @classmethod
    def just_created(cls, container_id: str, spec: ContainerSpec) -> ContainerInfo:
        """A container the engine has just created from `spec`: status "created", never
        started; `created_at_ms` is now."""
        return cls(
            id=container_id,
            name=spec.name,
            labels=dict(spec.labels),
            status="created",
            pid=0,
            created_at_ms=time.time_ns() // 1_000_000,
            started_at_ms=0,
            finished_at_ms=0,
            exit_code=0,
            oom_killed=False,
            ip_address="",
            memory_limit_bytes=spec.memory_bytes,
        )


@dataclass(frozen=True, slots=True)
class ContainerEvent:
    """One engine event about a container (action: create, start, die, oom, destroy...)."""

    container_id: str
    action: str
    labels: dict[str, str]
    time_ns: int
    exit_code: int | None = None


#: Called with (stream, data) for the raw bytes a container wrote to "stdout" or
#: "stderr", on the event loop's thread (two arguments, not an OutputChunk: a console
#: line's hot path makes no object it does not need).
OnOutput = Callable[[str, bytes], None]


class OutputChunk(NamedTuple):
    """Raw bytes a container wrote to one of its streams (a NamedTuple: one is made per
    read of a console's output, where a frozen dataclass's __init__ costs more)."""

    stream: str  # "stdout" | "stderr"
    data: bytes


@dataclass(frozen=True, slots=True)
class ImageInfo:
    """One image on the engine; `used_as`: the names containers (ours or not) were
    created from with it (empty: no container uses it)."""

    id: str
    tags: tuple[str, ...]
    repo_digests: tuple[str, ...]
    created_at_ms: int
    size_bytes: int
    used_as: tuple[str, ...]
