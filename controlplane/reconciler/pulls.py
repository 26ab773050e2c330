"""What the reconciler makes of the agents' image pull reports (Watch lifecycle
events PULL_PROGRESS, PULLED, PULL_FAILED).

- The outcome ends the create/recreate call that started the pull: success clears
  the replica's failures, failure is recorded with its code and the back-off of
  :mod:`controlplane.reconciler.retry` (see :meth:`AgentCalls.pull_failed`).
- The first digest reported for a deployment's current generation is pinned into it,
  so every node creates the same image for that generation, whatever the tag does.
- Progress reaches users as `deployment_pull_progress` events (at most one every
  PROGRESS_EVERY seconds per replica), outcomes as `deployment_pulled` and
  `deployment_pull_failed`.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

from sqlalchemy import update
from sqlmodel import col

from common.image_reference import InvalidReference, parse_image_reference
from controlplane.db.engine import Database
from controlplane.db.tables import Deployment
from controlplane.events.bus import Event
from controlplane.reconciler.calls import AgentCalls
from controlplane.reconciler.model import LABEL_DEPLOYMENT, LABEL_GENERATION
from controlplane.reconciler.world import Rows
from protos import agent_pb2 as pb

PROGRESS_EVERY = 1.0
PULL_KINDS = frozenset(
    {pb.LIFECYCLE_KIND_PULL_PROGRESS, pb.LIFECYCLE_KIND_PULLED, pb.LIFECYCLE_KIND_PULL_FAILED}
)


def pull_view(progress: pb.PullProgress) -> dict[str, object]:
    """A pull's progress as the API and events show it."""
    return {
        "image": progress.image,
        "bytes_done": progress.bytes_done,
        "bytes_total": progress.bytes_total,
        "layers_done": progress.layers_done,
        "layers_total": progress.layers_total,
    }


class PullReports:
    """Folds pull events into the reconciler's bookkeeping (loop-thread only)."""

    def __init__(
        self, calls: AgentCalls, publish: Callable[[Event], None], clock: Callable[[], float]
    ) -> None:
        self.calls, self._publish, self._clock = calls, publish, clock
        self.owners: dict[str, str] = {}  # deployment id -> owner id, from the last pass
        self.digests: dict[str, tuple[int, str]] = {}  # deployment -> (generation, digest)
        self._last_progress: dict[str, float] = {}

    def heard(self, lifecycle: pb.LifecycleEvent) -> bool:
        """Take one pull event; whether a reconcile pass should follow."""
        replica_id, status = lifecycle.server_id, lifecycle.status
        deployment_id = status.labels.get(LABEL_DEPLOYMENT, "")
        if lifecycle.kind == pb.LIFECYCLE_KIND_PULL_PROGRESS:
            now = self._clock()
            if now - self._last_progress.get(replica_id, 0.0) >= PROGRESS_EVERY:
                self._last_progress[replica_id] = now
                self._event("deployment_pull_progress", deployment_id, replica_id, status.pull)
            return False
        self._last_progress.pop(replica_id, None)
        if lifecycle.kind == pb.LIFECYCLE_KIND_PULLED:
            self.calls.pull_succeeded(replica_id)
            generation = status.labels.get(LABEL_GENERATION, "")
            if status.image_digest and generation.isdigit() and deployment_id:
                self.digests.setdefault(deployment_id, (int(generation), status.image_digest))
            self._event("deployment_pulled", deployment_id, replica_id, status.pull)
        else:
            self.calls.pull_failed(replica_id, lifecycle.error_code, lifecycle.error_message)
            self._event(
                "deployment_pull_failed",
                deployment_id,
                replica_id,
                status.pull,
                error={"code": lifecycle.error_code, "message": lifecycle.error_message},
            )
        return True

    def _event(
        self,
        kind: str,
        deployment_id: str,
        replica_id: str,
        progress: pb.PullProgress,
        **extra: object,
    ) -> None:
        owner = self.owners.get(deployment_id)
        if owner is None:
            return
        data = {"replica_id": replica_id, "pull": pull_view(progress), **extra}
        self._publish(Event(kind, owner_id=owner, deployment_id=deployment_id, data=data))

    async def pin_digests(self, database: Database, rows: Rows) -> None:
        """Pin reported digests into their deployments (first report per generation
        wins; a reference that names a digest already is left alone)."""
        self.owners = {d: str(row.user_id) for d, row in rows.deployments.items()}
        pins = {}
        for deployment_id, (generation, digest) in self.digests.items():
            row = rows.deployments.get(deployment_id)
            if row is None or row.generation != generation or _pinned(row):
                continue
            if row.image_digest_generation != generation:
                pins[deployment_id] = (generation, digest)
        self.digests.clear()
        if not pins:
            return
        async with database.transaction() as session:
            for deployment_id, (generation, digest) in pins.items():
                await session.exec(
                    update(Deployment)
                    .where(col(Deployment.id) == uuid.UUID(deployment_id))
                    .where(col(Deployment.generation) == generation)
                    .where(col(Deployment.image_digest_generation) != generation)
                    .values(image_digest=digest, image_digest_generation=generation)
                )
        for deployment_id, (generation, digest) in pins.items():
            row = rows.deployments[deployment_id]
            row.image_digest, row.image_digest_generation = digest, generation


def _pinned(row: Deployment) -> bool:
    try:
        return parse_image_reference(row.image).pinned
    except InvalidReference:
        return False
