"""Task containers that nothing accounts for, found level-triggered and removed.

A task's container is accounted for (its capacity claimed, its removal owed) by its
task row while that row is Running on the container's node. A container labelled as a
task that an agent reports without such a row — the task was deleted while its start
was in flight, the row is on another node, or the task ended in the database while its
container still runs — is an orphan. It is removed, with its data, once it has stayed
an orphan for a grace period (so that a report racing a start that is about to record
its row is never acted on). A finished task's exited container is not an orphan: it
stays until its task is deleted, which removes it.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from common.logging import get_logger
from controlplane.db.tables.tasks import RUNNING, Task
from protos import agent_pb2 as pb

log = get_logger(__name__)

#: How long a task container must stay unaccounted for before it is removed.
ORPHAN_GRACE_SECONDS = 30.0

RemoveServer = Callable[[str, str], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class TaskRow:
    """What the orphan check needs of a task row."""

    status: str
    node_id: uuid.UUID | None

    @classmethod
    def of(cls, task: Task) -> TaskRow:
        """The view of `task`."""
        return cls(task.status, task.node_id)


def is_orphan(node_id: str, status: pb.ServerStatus, row: TaskRow | None) -> bool:
    """Whether the task container `status` on `node_id` is unaccounted for (see the
    module docstring): no row, a row on another node, or a row not Running while the
    container has not exited."""
    if row is None or str(row.node_id) != node_id:
        return True
    return row.status != RUNNING and not status.exited


class OrphanSweeper:
    """Remembers since when each task container has been an orphan; removes it once
    that is longer than `grace_seconds`. Holds only containers that are orphans now."""

    def __init__(self, remove: RemoveServer, grace_seconds: float = ORPHAN_GRACE_SECONDS) -> None:
        self._remove = remove
        self._grace = grace_seconds
        self._since: dict[tuple[str, str], float] = {}

    async def sweep(
        self,
        node_id: str,
        reported: Sequence[pb.ServerStatus],
        rows: dict[str, TaskRow],
    ) -> list[str]:
        """Check the task containers `reported` by `node_id` against their task rows
        (`rows`, by server id; missing = no row); remove those that have been orphans
        for the grace period. The ids of the servers removed."""
        now = time.monotonic()
        orphans = {s.id for s in reported if is_orphan(node_id, s, rows.get(s.id))}
        self._since = {
            key: since
            for key, since in self._since.items()
            if key[0] != node_id or key[1] in orphans
        }
        removed: list[str] = []
        for server_id in sorted(orphans):
            since = self._since.setdefault((node_id, server_id), now)
            if now - since < self._grace:
                continue
            try:
                await self._remove(node_id, server_id)
            except Exception as exc:
                log.warning("task_orphan_not_removed", node_id=node_id, server_id=server_id,
                            error=str(exc))  # fmt: skip
                continue
            log.info("task_orphan_removed", node_id=node_id, server_id=server_id)
            self._since.pop((node_id, server_id), None)
            removed.append(server_id)
        return removed
