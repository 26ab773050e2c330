"""Draining a node moves its slots away with their data, one at a time (a leader duty).

Every `interval` seconds, for each draining node whose agent answers, the first slot
still placed there (by deployment and ordinal) is moved with :class:`SlotMover` — the
path `POST …/replicas/{ordinal}/move` takes — and the next only after it ended. A
move that fails leaves the slot running on the draining node (its error is on the
replica) and is tried again after `retry_after` seconds; other slots go on meanwhile.
A node that does not answer cannot hand its data over: its slots follow their
deployment's `on_node_loss` once it is down (docs/stateful.md).
"""

from __future__ import annotations

import asyncio
import time

from sqlmodel import col, select

from common.logging import get_logger
from controlplane.db.engine import Database
from controlplane.db.tables import Node, Replica
from controlplane.volumes.moves import MoveFailed, MoveRefused, SlotMover

log = get_logger(__name__)


class NodeDrain:
    """Moves slots off draining nodes (see the module docstring)."""

    def __init__(
        self, database: Database, mover: SlotMover, *, interval: float, retry_after: float = 30.0
    ) -> None:
        self.database, self.mover = database, mover
        self.interval, self.retry_after = interval, retry_after
        self._failed_at: dict[str, float] = {}

    async def run(self) -> None:
        """Drain forever."""
        while True:
            moved = await self.drain_once()
            if not moved:
                await asyncio.sleep(self.interval)

    async def drain_once(self) -> bool:
        """Move one slot off a draining node; True when one moved."""
        for replica in await self._candidates():
            replica_id = str(replica.id)
            if time.monotonic() - self._failed_at.get(replica_id, float("-inf")) < self.retry_after:
                continue
            try:
                plan = await self.mover.plan(replica.deployment_id, replica.ordinal, None)
                await self.mover.move(plan)
            except (MoveRefused, MoveFailed) as exc:
                log.warning("drain_move_failed", replica=replica_id, error=str(exc))
                self._failed_at[replica_id] = time.monotonic()
                continue
            self._failed_at.pop(replica_id, None)
            return True
        return False

    async def _candidates(self) -> list[Replica]:
        async with self.database.session() as session:
            draining = select(Node.id).where(col(Node.draining))
            rows = await session.exec(
                select(Replica)
                .where(col(Replica.node_id).in_(draining))
                .order_by(col(Replica.deployment_id), col(Replica.ordinal))
            )
            return list(rows.all())
