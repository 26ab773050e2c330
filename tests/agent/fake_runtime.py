"""An in-memory :class:`~agent.runtime.protocol.ContainerRuntime` (checked by mypy
below and by the shared contract in tests/agent/test_runtime_contract.py, which runs
the same checks against the real Docker runtime on the local dockerd).

Containers run nothing: a started one stays running until signalled (SIGTERM,
SIGKILL...) or removed. Events (create, start, die, destroy) are delivered to
subscribers at once, on the calling thread.
"""

from __future__ import annotations

import itertools
import signal as signals
import time
from collections.abc import Callable, Mapping
from dataclasses import replace

from agent.runtime.images import ImageUnknown, PullProgress, RegistryCredentials
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
    NotFound,
    NotRunning,
    OnOutput,
    OutputChunk,
)
from common.image_reference import ImageReference


def _now_ms() -> int:
    return int(time.time() * 1000)


class FakeAttachment:
    """:class:`AttachedStreams` of a fake container: stdin is recorded."""

    def __init__(self, on_end: Callable[[], None]) -> None:
        self.written = bytearray()
        self._on_end = on_end
        self._closed = False

    async def write(self, data: bytes) -> None:
        if self._closed:
            raise NotRunning("the container's streams are closed")
        self.written.extend(data)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._on_end()

    @property
    def closed(self) -> bool:
        return self._closed


class FakeSubscription:
    """:class:`EventSubscription` of the fake runtime."""

    def __init__(self, runtime: FakeContainerRuntime) -> None:
        self._runtime = runtime

    def close(self) -> None:
        self._runtime.subscribers.pop(id(self), None)


class FakeContainerRuntime:
    """Containers in memory (see the module docstring); `images` are present."""

    def __init__(self, images: set[str]) -> None:
        self.images = set(images)
        self.containers: dict[str, ContainerInfo] = {}
        self.subscribers: dict[int, tuple[Mapping[str, str], Callable[[ContainerEvent], None]]]
        self.subscribers = {}
        self.attachments: dict[str, list[FakeAttachment]] = {}
        self._ids = itertools.count(1)

    def _emit(self, info: ContainerInfo, action: str, exit_code: int | None = None) -> None:
        event = ContainerEvent(info.id, action, dict(info.labels), time.time_ns(), exit_code)
        for labels, on_event in list(self.subscribers.values()):
            if all(info.labels.get(k) == v for k, v in labels.items()):
                on_event(event)

    def _find(self, container_id: str) -> ContainerInfo:
        for info in self.containers.values():
            if container_id in (info.id, info.name):
                return info
        raise NotFound(f"no such container: {container_id}")

    async def version(self) -> str:
        return "fake"

    async def id_mapping(self) -> IdMapping:
        return IdMapping()

    async def image_exists(self, image: str) -> bool:
        return image in self.images

    async def local_image_digest(self, reference: ImageReference, image: str) -> str | None:
        # Fake images never came from a registry.
        return "" if image in self.images else None

    async def pull_image(
        self,
        reference: ImageReference,
        image: str,
        credentials: RegistryCredentials | None,
        on_progress: Callable[[PullProgress], None],
    ) -> str:
        raise ImageUnknown(f"the fake engine has no registry to pull {image} from")

    async def check_image(
        self,
        reference: ImageReference,
        image: str,
        credentials: RegistryCredentials | None,
        registry_seconds: float,
        *,
        use_local: bool = True,
    ) -> bool:
        if use_local and image in self.images:
            return True
        raise ImageUnknown(f"the fake engine has no registry to look {image} up in")

    async def list_images(self) -> list[ImageInfo]:
        return [ImageInfo(name, (name,), (), 0, 0, ()) for name in sorted(self.images)]

    async def remove_image(self, image_id: str) -> bool:
        self.images.discard(image_id)
        return True

    async def use_network(self, name: str) -> str:
        return name

    async def create(self, spec: ContainerSpec) -> ContainerInfo:
        if spec.image not in self.images:
            raise ImageNotFound.of(spec.image)
        if any(info.name == spec.name for info in self.containers.values()):
            raise AlreadyExists(f"the name {spec.name} is taken")
        info = ContainerInfo.just_created(f"{next(self._ids):064x}", spec)
        self.containers[info.id] = info
        self._emit(info, "create")
        return info

    async def start(self, container_id: str) -> ContainerInfo:
        info = self._find(container_id)
        if info.running:
            return info
        started = replace(info, status="running", pid=4242, started_at_ms=_now_ms())
        self.containers[info.id] = started
        self._emit(started, "start")
        return started

    async def signal(self, container_id: str, signal: str) -> None:
        info = self._find(container_id)
        if not info.running:
            raise NotRunning(f"container {container_id} is not running")
        code = 128 + int(signals.Signals[signal if signal.startswith("SIG") else f"SIG{signal}"])
        self._exit(info, code)

    def _exit(self, info: ContainerInfo, code: int) -> None:
        ended = replace(info, status="exited", pid=0, exit_code=code, finished_at_ms=_now_ms())
        self.containers[info.id] = ended
        for attachment in self.attachments.pop(info.id, []):
            attachment.close()
        self._emit(ended, "die", code)

    async def remove(self, container_id: str) -> None:
        try:
            info = self._find(container_id)
        except NotFound:
            return
        if info.running:
            self._exit(info, 137)
        del self.containers[info.id]
        self._emit(info, "destroy")

    async def inspect(self, container_id: str) -> ContainerInfo:
        return self._find(container_id)

    async def list_containers(self, labels: Mapping[str, str]) -> list[ContainerInfo]:
        return [
            info
            for info in self.containers.values()
            if all(info.labels.get(k) == v for k, v in labels.items())
        ]

    async def exec(self, container_id: str, command: list[str]) -> int:
        if not self._find(container_id).running:
            raise NotRunning(f"container {container_id} is not running")
        return 0

    async def open_exec(
        self, container_id: str, command: list[str], *, height: int, width: int, term: str
    ) -> ExecProcess:
        if not self._find(container_id).running:
            raise NotRunning(f"container {container_id} is not running")
        raise ContainerRuntimeError("the fake engine runs no interactive commands")

    async def logs(self, container_id: str, tail: int) -> list[OutputChunk]:
        self._find(container_id)
        return []

    async def attach(
        self,
        container_id: str,
        on_output: OnOutput,
        on_end: Callable[[], None],
    ) -> AttachedStreams:
        info = self._find(container_id)
        attachment = FakeAttachment(on_end)
        self.attachments.setdefault(info.id, []).append(attachment)
        return attachment

    def subscribe(
        self, labels: Mapping[str, str], on_event: Callable[[ContainerEvent], None]
    ) -> EventSubscription:
        subscription = FakeSubscription(self)
        self.subscribers[id(subscription)] = (dict(labels), on_event)
        return subscription

    async def close(self) -> None:
        self.subscribers.clear()


def _checked(runtime: FakeContainerRuntime) -> ContainerRuntime:
    return runtime  # mypy proves FakeContainerRuntime implements the Protocol
