"""The container engine as the agent sees it."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol

from agent.runtime.images import PullProgress, RegistryCredentials
from agent.runtime.types import (
    ContainerEvent,
    ContainerInfo,
    ContainerSpec,
    IdMapping,
    ImageInfo,
    OnOutput,
    OutputChunk,
)
from common.image_reference import ImageReference


class AttachedStreams(Protocol):
    """A live attachment to one container's stdin/stdout/stderr.

    Output is delivered to the callback given to :meth:`ContainerRuntime.attach` on
    the event loop's thread, in the loop turn that read it (callbacks must not block
    or await); `on_end` runs once, likewise, when the streams close (also after
    close()). A callback that raises is logged and the output goes on.
    """

    async def write(self, data: bytes) -> None:
        """Write to the container's stdin. Raises NotRunning when the stream is closed."""

    def close(self) -> None:
        """Stop reading; safe to call more than once (from the event loop's thread)."""

    @property
    def closed(self) -> bool:
        """True once the streams have ended or close() was called."""


class ExecProcess(Protocol):
    """A command started in a running container with a TTY (see
    :meth:`ContainerRuntime.open_exec`). Output (stdout and stderr share the TTY)
    is read with :meth:`read`; the engine's socket is never read on the loop's
    thread in a blocking way."""

    async def read(self) -> bytes:
        """The next output bytes; b"" once the command's TTY has closed."""

    async def write(self, data: bytes) -> None:
        """Write to the command's TTY. NotRunning once it has ended."""

    async def resize(self, height: int, width: int) -> None:
        """Set the TTY's size (rows, columns); a no-op once the command has ended."""

    async def exit_code(self) -> int | None:
        """The exit code once output has ended; None when the engine does not know it
        (the command was detached and is still running)."""

    async def close(self) -> None:
        """Release the TTY; a command still running is hung up (SIGHUP, then SIGKILL
        after a grace period). Safe to call more than once."""


class EventSubscription(Protocol):
    """A running subscription to engine events."""

    def close(self) -> None:
        """Stop the subscription; the callback is not called afterwards."""


class ContainerRuntime(Protocol):
    """Containers on one engine. Every method is safe to call from the event loop:
    blocking engine calls run in the runtime's own thread pool. Errors are the typed
    exceptions of :mod:`agent.runtime.types`."""

    async def version(self) -> str:
        """The engine's version string."""

    async def id_mapping(self) -> IdMapping:
        """How container uids/gids appear on the host: identity, or the daemon's
        user-namespace remapping (the same for every container of the engine)."""

    async def image_exists(self, image: str) -> bool:
        """True when `image` is present locally (this call never pulls)."""

    async def local_image_digest(self, reference: ImageReference, image: str) -> str | None:
        """None when `image` is not on this node; else the repo@sha256 digest it was
        pulled as ("" for an image that never came from a registry)."""

    async def pull_image(
        self,
        reference: ImageReference,
        image: str,
        credentials: RegistryCredentials | None,
        on_progress: Callable[[PullProgress], None],
    ) -> str:
        """Pull `image` (joining a pull of it already running); its repo@sha256 digest.
        ImageUnknown, RegistryDenied, RegistryUnreachable or PullFailed."""

    async def check_image(
        self,
        reference: ImageReference,
        image: str,
        credentials: RegistryCredentials | None,
        registry_seconds: float,
        *,
        use_local: bool = True,
    ) -> bool:
        """True when `image` is present locally (only asked when `use_local`), False when
        it is not but its registry serves the manifest with `credentials` (this call
        never pulls). ImageUnknown,
        RegistryDenied, RegistryUnreachable (also: no answer within `registry_seconds`) or
        PullFailed."""

    async def list_images(self) -> list[ImageInfo]:
        """Every image on the engine, with the names containers (any) use it as."""

    async def remove_image(self, image_id: str) -> bool:
        """Remove the name (tag or digest) `image_id`; the image itself goes with its
        last name. False when the engine refused (a container uses it)."""

    async def use_network(self, name: str) -> str:
        """Containers created from now on with networking join the network `name`; its
        id (or Docker's own mode name). Docker's own networks are used as they are
        ("bridge": the engine default, where containers reach each other). Any other
        is used as is when it exists, and otherwise created as a bridge without
        traffic between its containers, labelled `encedeus.managed=true`. Agents that
        share an engine and call this at the same moment all get the same network;
        when the engine holds several of that name, the smallest id is chosen.
        Until it is called, containers join the engine's default bridge."""

    async def create(self, spec: ContainerSpec) -> ContainerInfo:
        """Create (not start). ImageNotFound, AlreadyExists (name taken), InvalidSpec.
        The info returned is the spec's (status "created", no pid), without asking the
        engine again."""

    async def start(self, container_id: str) -> ContainerInfo:
        """Start; starting a running container is a no-op. Returns the container as the
        engine reports it just after (read in the same call, not a second one)."""

    async def signal(self, container_id: str, signal: str) -> None:
        """Send `signal` (e.g. "SIGTERM"). NotRunning when it is not running."""

    async def remove(self, container_id: str) -> None:
        """Remove forcefully (killing it if needed); removing a missing one is a no-op."""

    async def inspect(self, container_id: str) -> ContainerInfo:
        """Current facts about one container. NotFound when it does not exist."""

    async def list_containers(self, labels: Mapping[str, str]) -> list[ContainerInfo]:
        """Every container (running or not) carrying all of `labels`."""

    async def exec(self, container_id: str, command: list[str]) -> int:
        """Run `command` inside the running container; its exit code."""

    async def open_exec(
        self, container_id: str, command: list[str], *, height: int, width: int, term: str
    ) -> ExecProcess:
        """Start `command` in the running container with a TTY of `height` x `width`
        and `TERM=term`. NotFound, NotRunning, or ContainerRuntimeError (e.g. no
        such executable)."""

    async def logs(self, container_id: str, tail: int) -> list[OutputChunk]:
        """The last `tail` lines the engine kept, oldest first."""

    async def attach(
        self,
        container_id: str,
        on_output: OnOutput,
        on_end: Callable[[], None],
    ) -> AttachedStreams:
        """Attach to stdin/stdout/stderr (works before start: nothing is missed);
        `on_output(stream, data)` runs on the loop for each chunk of output."""

    def subscribe(
        self, labels: Mapping[str, str], on_event: Callable[[ContainerEvent], None]
    ) -> EventSubscription:
        """Deliver container events for containers with `labels`, from a thread."""

    async def close(self) -> None:
        """Release the engine connection and threads."""
