"""The volume sweep: the leader deletes due copies of volumes on every node holding one.

Due are (docs/stateful.md):

- the data of a **released** slot (scale-down, or a deployment deleted with
  `delete_data=true`) once its `delete_after` has passed, on every node that has it;
- a **stale copy** — a directory of a slot that is placed on another node now (a
  move without its data left it behind) — `volume_grace_seconds` after the sweep
  first found it (never while its slot waits unplaced: it may be the only copy).

Each pass asks every node the pool reaches for its volumes (`NodeInfo.volumes`),
works out the orphans exactly as the listings do
(:func:`controlplane.volumes.orphans.orphaned_on`), and calls `DeleteVolume` for the
due ones. What it found and did is recorded per (volume, node) in `volume_copies`
(found, deleted, or the last error and the number of attempts); a node that does not
answer, or refuses (a server uses the volume again), is tried on a later pass. A
release record goes once every node answered a pass without holding its data.
A directory nothing records (not a slot's) is never deleted: it stays listed for the
admin.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlmodel import col, delete, select
from sqlmodel.ext.asyncio.session import AsyncSession

from common.logging import get_logger
from controlplane.agents import AgentError, AgentPool
from controlplane.db.engine import Database
from controlplane.db.tables import Node, ReleasedVolume, Replica, VolumeCopy
from controlplane.db.tables.tasks import Task
from controlplane.db.types import utcnow
from controlplane.placement import Fence
from controlplane.volumes.orphans import OrphanedVolume, node_volumes, orphaned_on
from protos import agent_pb2 as pb

log = get_logger(__name__)
CopyKey = tuple[str, str]  # (volume id, node id)


def is_due(
    orphan: OrphanedVolume,
    copies: Mapping[CopyKey, VolumeCopy],
    placed: Collection[str],
    now: datetime,
    grace: timedelta,
) -> bool:
    """Whether the sweep deletes `orphan` now (see the module docstring): a released
    slot's data past `delete_after`; a stale copy of a slot `placed` elsewhere,
    `grace` after it was first found."""
    if orphan.delete_after is not None:
        return orphan.delete_after <= now
    if orphan.deployment_id is None or orphan.volume_id not in placed:
        return False
    copy = copies.get((orphan.volume_id, orphan.node_id))
    return copy is not None and copy.found_at + grace <= now


@dataclass(slots=True)
class SweepRows:
    """What one pass reads, and the records it writes back."""

    replicas: list[Replica]
    task_ids: set[str]
    released: dict[str, ReleasedVolume]
    copies: dict[CopyKey, VolumeCopy]
    node_ids: list[str]
    holders: dict[str, set[str]] = field(default_factory=dict)
    """volume id -> the nodes that still hold it after this pass."""
    answered: set[str] = field(default_factory=set)


class VolumeSweep:
    """The sweep's passes; :meth:`run` is the leader duty."""

    def __init__(
        self,
        database: Database,
        pool: AgentPool,
        *,
        grace_seconds: float,
        interval: float,
        fence: Fence | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.database, self.pool = database, pool
        self.grace = timedelta(seconds=grace_seconds)
        self.interval, self._fence, self._clock = interval, fence, clock

    async def run(self) -> None:
        """A pass every `interval` seconds, forever."""
        while True:
            await self.sweep_once()
            await asyncio.sleep(self.interval)

    async def sweep_once(self) -> SweepRows:
        """One pass over every node; the rows as written back."""
        rows = await self._read()
        now = self._clock()
        for node_id in rows.node_ids:
            listed = await node_volumes(self.pool, node_id)
            if listed is not None:
                rows.answered.add(node_id)
                await self._sweep_node(rows, node_id, listed, now)
        await self._write(rows, now)
        return rows

    async def _read(self) -> SweepRows:
        async with self.database.session() as session:
            replicas = list((await session.exec(select(Replica))).all())
            tasks = {str(t) for t in (await session.exec(select(Task.id))).all()}
            released = {str(r.volume_id): r for r in await session.exec(select(ReleasedVolume))}
            copies = {
                (c.volume_id, str(c.node_id)): c for c in await session.exec(select(VolumeCopy))
            }
            nodes = [str(n) for n in (await session.exec(select(Node.id))).all()]
        return SweepRows(replicas, tasks, released, copies, nodes)

    async def _sweep_node(
        self, rows: SweepRows, node_id: str, listed: list[pb.VolumeInfo], now: datetime
    ) -> None:
        orphans = orphaned_on(
            node_id, listed, rows.replicas, rows.task_ids, rows.released, self.grace
        )
        placed = {str(r.slot_volume) for r in rows.replicas if r.node_id is not None}
        seen: set[CopyKey] = set()
        for orphan in orphans:
            if orphan.deployment_id is None:
                continue  # nobody's: listed for the admin, never deleted
            key = (orphan.volume_id, node_id)
            seen.add(key)
            copy = _found(rows.copies, key, orphan, now)
            if is_due(orphan, rows.copies, placed, now, self.grace):
                await self._delete(node_id, copy, now)
            if copy.deleted_at is None:
                rows.holders.setdefault(orphan.volume_id, set()).add(node_id)
        for key, copy in list(rows.copies.items()):
            if key[1] == node_id and key not in seen and copy.deleted_at is None:
                del rows.copies[key]  # in use here again, or gone: no longer a copy

    async def _delete(self, node_id: str, copy: VolumeCopy, now: datetime) -> None:
        copy.attempts += 1
        try:
            await self.pool.client(node_id).delete_volume(copy.volume_id)
        except AgentError as exc:
            copy.last_error = exc.message[:1000]
            log.warning(
                "volume_delete_failed", volume=copy.volume_id, node=node_id, error=exc.message
            )
            return
        copy.deleted_at, copy.last_error = now, None
        log.info("volume_deleted", volume=copy.volume_id, node=node_id)

    async def _write(self, rows: SweepRows, now: datetime) -> None:
        everyone_answered = set(rows.node_ids) <= rows.answered
        async with self.database.transaction() as session:
            if self._fence is not None:
                await self._fence(session)
            for copy in rows.copies.values():
                await session.merge(copy)
            await _forget_copies(session, rows)
            if not everyone_answered:
                return
            for volume_id, release in rows.released.items():
                due = (release.delete_after or release.released_at + self.grace) <= now
                if due and not rows.holders.get(volume_id):
                    await session.exec(
                        delete(ReleasedVolume).where(
                            col(ReleasedVolume.volume_id) == release.volume_id
                        )
                    )


def _found(
    copies: dict[CopyKey, VolumeCopy], key: CopyKey, orphan: OrphanedVolume, now: datetime
) -> VolumeCopy:
    """The record of the copy at `key`, made now when it is new (or was deleted and is
    back: a node restored from an old disk)."""
    copy = copies.get(key)
    if copy is None or copy.deleted_at is not None:
        copy = VolumeCopy(
            volume_id=key[0],
            node_id=uuid.UUID(key[1]),
            deployment_id=uuid.UUID(orphan.deployment_id) if orphan.deployment_id else None,
            ordinal=orphan.ordinal,
            found_at=now,
        )
        copies[key] = copy
    return copy


async def _forget_copies(session: AsyncSession, rows: SweepRows) -> None:
    """Drop the records of copies an answering node no longer holds as orphans."""
    keep = set(rows.copies)
    existing = (await session.exec(select(VolumeCopy))).all()
    for copy in existing:
        key = (copy.volume_id, str(copy.node_id))
        if key[1] in rows.answered and key not in keep and copy.deleted_at is None:
            await session.delete(copy)
