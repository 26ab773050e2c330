"""The commit point of every placement, modelled on Nomad's serial plan applier.

Deployments (the reconciler) and tasks (the task runner) propose placements from a
capacity snapshot that may be stale by the time they commit. :meth:`PlacementApplier.commit`
runs one commit at a time: in one transaction it first writes what frees room (e.g.
forgotten replicas), reads the capacity as it is now — the nodes as the agent pool
sees them and every committed :class:`~controlplane.scheduler.Claim` — and admits
each proposal only if it still fits (:func:`~controlplane.scheduler.admit`), writing
them in the same transaction. A commit is all or nothing: when any proposal lost a
race, the transaction is rolled back and :class:`PlacementRefused` names the losers
and why; the proposer plans again from a fresh snapshot (a move whose new place was
refused must not half happen: its old replica would be forgotten with no new one).

With several control planes, every commit takes a transaction-scoped advisory lock
first, so commits are serial across processes too (a task started through any control
plane places on the same commit point); the leader's commits also pass its `fence`.
What later kinds of placement need — disk, quotas, a task queue — is checked here
too, by extending the claims and the admission check, never beside it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import BigInteger, bindparam, func
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from controlplane.agents import AgentPool
from controlplane.db.engine import Database
from controlplane.db.tables import Node
from controlplane.placement.claims import load_claims
from controlplane.reconciler.world import node_view
from controlplane.scheduler import Claim, Snapshot, admit, snapshot_of

Write = Callable[[AsyncSession], Awaitable[None]]
#: Raises (e.g. LeadershipLost) to refuse a commit made by a deposed leader.
Fence = Callable[[AsyncSession], Awaitable[None]]
# pg_advisory_xact_lock key that serialises commits of every control plane ("placemnt").
COMMIT_LOCK_KEY = 0x706C6163656D6E74


@dataclass(frozen=True, slots=True)
class Proposal:
    """Place `key` (a replica or task id) with `claim`; `write` records the placement
    in the commit's transaction (it may raise to abort the whole commit)."""

    key: str
    claim: Claim
    write: Write


class PlacementRefused(Exception):
    """A commit was rolled back: `refused` maps each proposal that no longer fits to
    the reason (see :mod:`controlplane.scheduler.capacity`)."""

    def __init__(self, refused: dict[str, str]) -> None:
        super().__init__(f"placement refused: {refused}")
        self.refused = refused


class PlacementApplier:
    """The one serial commit point (see the module docstring)."""

    def __init__(self, database: Database, pool: AgentPool) -> None:
        self._database = database
        self._pool = pool
        self._lock = asyncio.Lock()
        self._listeners: list[Callable[[], None]] = []

    def add_listener(self, listener: Callable[[], None]) -> None:
        """Call `listener` after every commit (what reads the placements, e.g. the
        routing table, follows a move as soon as it commits)."""
        self._listeners.append(listener)

    async def _snapshot_in(self, session: AsyncSession) -> Snapshot:
        nodes = (await session.exec(select(Node))).all()
        capacities = [node_view(row, self._pool).for_placement() for row in nodes]
        return snapshot_of(capacities, await load_claims(session))

    async def snapshot(self) -> Snapshot:
        """The capacity as committed now, to plan proposals on."""
        async with self._database.session() as session:
            return await self._snapshot_in(session)

    async def commit(
        self,
        proposals: Sequence[Proposal],
        *,
        before: Write | None = None,
        fence: Fence | None = None,
    ) -> None:
        """Run `fence` and `before`, then check every proposal against the committed
        claims and write them, in one transaction, one commit at a time. Raises
        :class:`PlacementRefused` (nothing written) when any no longer fits, and what
        `fence` raises when it refuses."""
        async with self._lock:
            await self._commit_once(proposals, before, fence)
        for listener in self._listeners:
            listener()

    async def _commit_once(
        self, proposals: Sequence[Proposal], before: Write | None, fence: Fence | None
    ) -> None:
        async with self._database.transaction() as session:
            if self._database.dialect == "postgresql":
                key = bindparam("key", COMMIT_LOCK_KEY, type_=BigInteger)
                await session.exec(select(func.pg_advisory_xact_lock(key)))
            if fence is not None:
                await fence(session)
            if before is not None:
                await before(session)
            if not proposals:
                return
            await session.flush()
            verdicts = admit(await self._snapshot_in(session), [p.claim for p in proposals])
            refused = {
                p.key: verdict for p, verdict in zip(proposals, verdicts, strict=True) if verdict
            }
            if refused:
                raise PlacementRefused(refused)
            for proposal in proposals:
                await proposal.write(session)
