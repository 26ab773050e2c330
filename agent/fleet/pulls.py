"""Servers waiting for their image: the create (or recreate) call answers at once,
the pull runs here, and its progress, its digest or its failure go out on the Watch
stream as lifecycle events.

A pending create has no container: it shows as state PULLING. A pending recreate
keeps the old container running (its status carries the pull's progress) and
replaces it only once the pull succeeded, so a failed pull never removes a server.
The registry credentials live only in the pending entry, for the pull.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from agent.fleet.hub import WatchHub
from agent.fleet.image_gc import canonical
from agent.fleet.pull_grants import PullGrants
from agent.fleet.server import ManagedServer
from agent.runtime import ContainerRuntime, ContainerRuntimeError, ImageNotFound, InvalidSpec
from agent.runtime.images import PullFailed, PullProgress, RegistryCredentials
from common.image_reference import ImageReference, InvalidReference, parse_image_reference
from common.logging import get_logger
from protos import agent_pb2 as pb

log = get_logger(__name__)
DIGEST_LABEL = "encedeus.image-digest"

# Called once the image is there with (spec without credentials, start).
FinishCreate = Callable[[pb.ServerSpec, bool], Awaitable[object]]


def public_spec(spec: pb.ServerSpec) -> pb.ServerSpec:
    """`spec` as it may leave the agent: without registry credentials or input files."""
    copy = pb.ServerSpec()
    copy.CopyFrom(spec)
    copy.ClearField("registry_auth")
    del copy.files[:]
    return copy


def image_reference(spec: pb.ServerSpec) -> ImageReference:
    """The spec's parsed image; InvalidSpec when it is no reference."""
    try:
        return parse_image_reference(spec.image)
    except InvalidReference as exc:
        raise InvalidSpec(f"image {spec.image!r}: {exc}") from exc


def _image_names(image: str, digest: str) -> list[str]:
    """The names an image's pull grants are kept under: the spec's reference and the
    repo@sha256 digest, each in one spelling (a pinned reference finds the record of
    a pull by tag)."""
    return [canonical(image), canonical(digest) if digest else ""]


def credentials_of(spec: pb.ServerSpec) -> RegistryCredentials | None:
    auth = spec.registry_auth
    if not (auth.username or auth.password):
        return None
    return RegistryCredentials(auth.username, auth.password, auth.server_address)


@dataclass(eq=False)
class PendingPull:
    """One server waiting for its image; `replaces` is the server whose container it
    will replace (None for a new server)."""

    spec: pb.ServerSpec
    start: bool
    replaces: ManagedServer | None
    progress: pb.PullProgress
    task: asyncio.Task[None] | None = field(default=None, repr=False)

    @property
    def id(self) -> str:
        return self.spec.id

    def status(self) -> pb.ServerStatus:
        """PULLING with progress, or the replaced container's status plus progress."""
        if self.replaces is not None:
            status = self.replaces.status()
        else:
            status = pb.ServerStatus(
                id=self.spec.id, state=pb.SERVER_STATE_PULLING, labels=dict(self.spec.labels)
            )
        status.pull.CopyFrom(self.progress)
        return status

    def current_status(self) -> pb.ServerStatus:
        """status(), as ManagedServer.current_status() reads (built afresh: pulls are few)."""
        return self.status()

    def to_proto(self) -> pb.Server:
        return pb.Server(spec=public_spec(self.spec), status=self.status())


class ImagePulls:
    """The pending pulls of this node's servers (loop-thread only)."""

    def __init__(self, runtime: ContainerRuntime, hub: WatchHub, grants: PullGrants) -> None:
        self.runtime, self.hub, self.grants = runtime, hub, grants
        self.pending: dict[str, PendingPull] = {}

    async def resolve(self, spec: pb.ServerSpec) -> bool:
        """Whether `spec`'s image must be pulled first. When it need not, the local
        digest (if any) is written into the spec's labels. InvalidSpec for a bad
        reference, ImageNotFound when it is missing (or present only from credentialed
        pulls with other credentials, :mod:`agent.fleet.pull_grants`) and the policy
        forbids pulling. A local copy the spec's credentials do not cover is pulled
        again with them, so the registry decides."""
        reference = image_reference(spec)
        policy = spec.pull_policy
        if policy == pb.PULL_POLICY_ALWAYS:
            return True
        digest = await self.runtime.local_image_digest(reference, spec.image)
        usable = digest is not None and await self.local_copy_allowed(
            spec.image, digest, credentials_of(spec)
        )
        if not usable:
            if policy == pb.PULL_POLICY_NEVER:
                raise ImageNotFound(
                    f"image {spec.image!r} is not present on this node and its pull policy is never"
                    if digest is None
                    else f"image {spec.image!r} is on this node only from a pull with other "
                    "registry credentials; with pull policy never it cannot be used"
                )
            return True
        if digest:
            spec.labels[DIGEST_LABEL] = digest
        return False

    async def local_copy_allowed(
        self, image: str, digest: str, credentials: RegistryCredentials | None
    ) -> bool:
        """Whether `credentials` may use the local copy of `image` (repo@sha256
        `digest`, "" when it never came from a registry)."""
        await self.grants.load()
        return self.grants.allows(_image_names(image, digest), credentials)

    def begin(
        self,
        spec: pb.ServerSpec,
        start: bool,
        replaces: ManagedServer | None,
        finish: FinishCreate,
    ) -> PendingPull:
        """Start pulling for `spec`; `finish` creates the server once the image is there
        (replacing the container of `replaces` when set)."""
        pending = PendingPull(spec, start, replaces, pb.PullProgress(image=spec.image))
        self.pending[spec.id] = pending
        pending.task = asyncio.create_task(self._run(pending, finish), name=f"pull-{spec.id}")
        self._publish(pending, pb.LIFECYCLE_KIND_PULL_PROGRESS)
        return pending

    async def cancel(self, server_id: str) -> None:
        """Give up the pending pull of `server_id` (removal); no-op when none."""
        pending = self.pending.pop(server_id, None)
        if pending is None or pending.task is None:
            return
        pending.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await pending.task
        if pending.replaces is None:
            self.hub.publish(pb.LifecycleEvent(server_id=server_id, kind=pb.LIFECYCLE_KIND_REMOVED))

    async def close(self) -> None:
        """Abandon every pending pull (shutdown)."""
        for server_id in list(self.pending):
            await self.cancel(server_id)

    async def _run(self, pending: PendingPull, finish: FinishCreate) -> None:
        spec = pending.spec
        try:
            digest = await self.runtime.pull_image(
                image_reference(spec),
                spec.image,
                credentials_of(spec),
                lambda progress: self._progressed(pending, progress),
            )
        except PullFailed as exc:
            self._failed(pending, exc.code, str(exc))
            return
        await self.grants.record(_image_names(spec.image, digest), credentials_of(spec))
        if self.pending.get(spec.id) is not pending:
            return  # cancelled meanwhile
        del self.pending[spec.id]
        create = public_spec(spec)
        create.files.extend(spec.files)
        if digest:
            create.labels[DIGEST_LABEL] = digest
        pulled = pb.ServerStatus()
        pulled.CopyFrom(pending.status())
        pulled.image_digest = digest
        self.hub.publish(
            pb.LifecycleEvent(server_id=spec.id, kind=pb.LIFECYCLE_KIND_PULLED, status=pulled)
        )
        try:
            await finish(create, pending.start)
        except ContainerRuntimeError as exc:
            code = "invalid_spec" if isinstance(exc, InvalidSpec) else "create_failed"
            self._failed(pending, code, str(exc))

    def _progressed(self, pending: PendingPull, progress: PullProgress) -> None:
        pending.progress = pb.PullProgress(
            image=progress.image,
            bytes_done=progress.bytes_done,
            bytes_total=progress.bytes_total,
            layers_done=progress.layers_done,
            layers_total=progress.layers_total,
        )
        if self.pending.get(pending.id) is pending:
            self._publish(pending, pb.LIFECYCLE_KIND_PULL_PROGRESS)

    def _failed(self, pending: PendingPull, code: str, message: str) -> None:
        if self.pending.get(pending.id) is pending:
            del self.pending[pending.id]
        log.info("server_pull_failed", server_id=pending.id, code=code, error=message)
        # A new server is gone; a replacement leaves the old container as it was.
        status = (
            pending.replaces.status()
            if pending.replaces is not None
            else pb.ServerStatus(id=pending.id, labels=dict(pending.spec.labels))
        )
        self.hub.publish(
            pb.LifecycleEvent(
                server_id=pending.id,
                kind=pb.LIFECYCLE_KIND_PULL_FAILED,
                status=status,
                error_code=code,
                error_message=message,
            )
        )

    def _publish(self, pending: PendingPull, kind: pb.LifecycleKind.ValueType) -> None:
        self.hub.publish(
            pb.LifecycleEvent(server_id=pending.id, kind=kind, status=pending.status())
        )
