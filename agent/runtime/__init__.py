"""The container engine behind a Protocol (:class:`ContainerRuntime`), and Docker."""

from agent.runtime.docker_runtime import DockerRuntime
from agent.runtime.protocol import (
    AttachedStreams,
    ContainerRuntime,
    EventSubscription,
    ExecProcess,
)
from agent.runtime.types import (
    AlreadyExists,
    ContainerEvent,
    ContainerInfo,
    ContainerRuntimeError,
    ContainerSpec,
    IdMapping,
    ImageInfo,
    ImageNotFound,
    InvalidSpec,
    NotFound,
    NotRunning,
    OnOutput,
    OutputChunk,
    PortSpec,
)

__all__ = [
    "AlreadyExists",
    "AttachedStreams",
    "ContainerEvent",
    "ContainerInfo",
    "ContainerRuntime",
    "ContainerRuntimeError",
    "ContainerSpec",
    "DockerRuntime",
    "EventSubscription",
    "ExecProcess",
    "IdMapping",
    "ImageInfo",
    "ImageNotFound",
    "InvalidSpec",
    "NotFound",
    "NotRunning",
    "OnOutput",
    "OutputChunk",
    "PortSpec",
]
