"""Which control plane leads: a PostgreSQL lease with a fencing epoch.

The lease is a session-level advisory lock (``pg_try_advisory_lock``) held on a
dedicated asyncpg connection. PostgreSQL releases it the moment that connection ends
(process killed, network cut, connection terminated), so a follower that retries every
`retry_seconds` takes over within about that long. On taking over, the new leader
increments ``cluster.leader_epoch``; every write it makes as leader checks, in its own
transaction, that the epoch is still its own (:meth:`PostgresLeadership.fence`), so a
deposed leader that has not noticed yet is refused (:class:`LeadershipLost`).

The leader probes its connection every `probe_seconds`; when the probe fails or the
connection ends it stops acting at once: every leader duty is cancelled before it
campaigns again. Followers run the follower duties meanwhile.

On SQLite (:class:`SingleProcessLeadership`) the one process always leads.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import asyncpg  # type: ignore[import-untyped]
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from common.cancellation import cancel_and_wait, wait_set
from common.logging import get_logger
from controlplane.db.notify import connect_dedicated
from controlplane.db.tables import Cluster
from controlplane.db.tables.cluster import CLUSTER_ROW_ID

log = get_logger(__name__)

# pg_advisory_lock key of the leader lease: "encedeus" in ASCII, as a bigint.
LEASE_KEY = 0x656E636564657573
Role = Literal["leader", "follower"]


class LeadershipLost(Exception):
    """This process no longer leads (its epoch is not the cluster's): the write is refused."""


@dataclass(frozen=True, slots=True)
class Duty:
    """A loop that runs while this process has `role`; cancelled when it loses it."""

    name: str
    run: Callable[[], Awaitable[None]]
    role: Role = "leader"


class Leadership(Protocol):
    """The leadership of this process (see the module docstring)."""

    @property
    def epoch(self) -> int | None:
        """The fencing epoch while leading, None otherwise."""

    def add_duty(self, duty: Duty) -> None:
        """Run `duty` whenever this process has its role (register before `run`)."""

    @property
    def running_duties(self) -> frozenset[str]:
        """The names of the duties running now."""

    async def fence(self, session: AsyncSession) -> None:
        """In `session`'s transaction: LeadershipLost unless this process leads with
        the cluster's current epoch (holds the epoch row until the commit)."""

    async def run(self) -> None:
        """Campaign and run duties forever (cancel to stop)."""


def instance_name() -> str:
    """What the cluster row and the logs call this process."""
    return f"{socket.gethostname()}:{os.getpid()}"


async def _supervised(duty: Duty) -> None:
    """Run a duty; one that fails is logged and started again after a pause."""
    while True:
        try:
            await duty.run()
            return
        except Exception:
            log.exception("duty_failed", duty=duty.name)
        await asyncio.sleep(1.0)


async def _stop(tasks: list[asyncio.Task[None]]) -> None:
    """Cancel `tasks` until they end. Python 3.11's `wait_for` can swallow a
    cancellation that arrives as its inner future completes (a loop waiting for a
    wake-up that was just set), so one cancel may not stop a loop: cancel again."""
    while pending := [t for t in tasks if not t.done()]:
        for task in pending:
            task.cancel()
        await asyncio.wait(pending, timeout=0.5)
    for task in tasks:
        if not task.cancelled() and (error := task.exception()) is not None:
            log.error("duty_ended_with_error", duty=task.get_name(), error=str(error))


class _Duties:
    def __init__(self) -> None:
        self.all: list[Duty] = []
        self.running: frozenset[str] = frozenset()

    async def run(self, role: Role) -> None:
        """Run the duties of `role` until cancelled."""
        tasks = [
            asyncio.create_task(_supervised(d), name=d.name) for d in self.all if d.role == role
        ]
        self.running = frozenset(task.get_name() for task in tasks)
        try:
            await asyncio.Event().wait()
        finally:
            self.running = frozenset()
            await _stop(tasks)


class SingleProcessLeadership:
    """The embedded database's leadership: this process leads from start to end."""

    def __init__(self) -> None:
        self._duties = _Duties()
        self._running = False

    @property
    def epoch(self) -> int | None:
        return 0 if self._running else None

    def add_duty(self, duty: Duty) -> None:
        self._duties.all.append(duty)

    @property
    def running_duties(self) -> frozenset[str]:
        return self._duties.running

    async def fence(self, session: AsyncSession) -> None:
        return None

    async def run(self) -> None:
        self._running = True
        try:
            await self._duties.run("leader")
        finally:
            self._running = False


class PostgresLeadership:
    """The advisory-lock lease on PostgreSQL (see the module docstring)."""

    def __init__(
        self,
        connect_args: dict[str, Any],
        *,
        name: str | None = None,
        retry_seconds: float = 1.0,
        probe_seconds: float = 1.0,
    ) -> None:
        self._connect_args = connect_args
        self.name = name or instance_name()
        self._retry = retry_seconds
        self._probe = probe_seconds
        self._duties = _Duties()
        self._epoch: int | None = None
        self.elected = asyncio.Event()

    @property
    def epoch(self) -> int | None:
        return self._epoch

    def add_duty(self, duty: Duty) -> None:
        self._duties.all.append(duty)

    @property
    def running_duties(self) -> frozenset[str]:
        return self._duties.running

    async def fence(self, session: AsyncSession) -> None:
        mine = self._epoch
        statement = (
            select(Cluster.leader_epoch)
            .where(col(Cluster.id) == CLUSTER_ROW_ID)
            .with_for_update(read=True)
        )
        current = (await session.exec(statement)).one()
        if mine is None or current != mine:
            raise LeadershipLost(f"leader epoch is {current}, this process holds {mine}")

    async def run(self) -> None:
        while True:
            followers = asyncio.create_task(self._duties.run("follower"), name="follower-duties")
            connection: Any = None
            try:
                connection = await self._campaign()
                await cancel_and_wait(followers)
                await self._lead(connection)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
                log.warning("leadership_lost", name=self.name, epoch=self._epoch, error=str(exc))
            finally:
                # First, before any await: the lease must not outlive a cancellation.
                if connection is not None:
                    connection.terminate()
                self._epoch = None
                self.elected.clear()
                await cancel_and_wait(followers)

    async def _campaign(self) -> Any:
        """Until this process holds the lock: the connection that holds it."""
        while True:
            connection = None
            try:
                connection = await connect_dedicated(self._connect_args)
                while True:
                    if await connection.fetchval("SELECT pg_try_advisory_lock($1)", LEASE_KEY):
                        return connection
                    await asyncio.sleep(self._retry)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
                log.warning("leadership_campaign_failed", error=str(exc))
                if connection is not None:
                    connection.terminate()
            except BaseException:
                # Cancelled (shutdown): a lock taken meanwhile must not outlive us.
                if connection is not None:
                    connection.terminate()
                raise
            await asyncio.sleep(self._retry)

    async def _lead(self, connection: Any) -> None:
        """Take the next epoch, run the leader duties, probe the connection; raises
        when the connection fails (the duties are cancelled first)."""
        self._epoch = await connection.fetchval(
            "UPDATE cluster SET leader_epoch = leader_epoch + 1, leader_name = $1,"
            " leader_since = now() WHERE id = 1 RETURNING leader_epoch",
            self.name,
        )
        log.info("leadership_acquired", name=self.name, epoch=self._epoch)
        self.elected.set()
        lost = asyncio.Event()
        connection.add_termination_listener(lambda _c: lost.set())
        duties = asyncio.create_task(self._duties.run("leader"), name="leader-duties")
        try:
            while not lost.is_set():
                await wait_set(lost, self._probe)
                await connection.fetchval("SELECT 1", timeout=self._probe)
            raise ConnectionError("the lease connection closed")
        finally:
            await cancel_and_wait(duties)
