"""Puts the agent pool and the reconciler on the application.

Both are built at once (no I/O) so that other components can reach them while the
app is assembled — the task runner places and runs task containers through the same
:class:`AgentPool` — and are started by a cleanup context after the database is
migrated, and stopped before it closes.

With several control planes every process keeps its own `Watch` stream to every agent
(so its status, metrics and node views and its console, logs and command calls need no
other process), but only the leader reconciles: the reconciler's loop is a leader duty
of :mod:`controlplane.leadership`, and a follower keeps its pool in step with the
enrolled nodes itself (:func:`follow_nodes`). A change made through any process wakes
the leader's reconciler through NOTIFY (:data:`WAKE_CHANNEL`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web
from sqlmodel import select

from common.cancellation import wait_set
from controlplane.agents import AgentPool, NodeEndpoint, grpc_client_factory
from controlplane.agents.http_urls import agent_client_tls
from controlplane.config import ControlPlaneConfig
from controlplane.db.engine import Database
from controlplane.db.notify import Notifier
from controlplane.db.tables import Node
from controlplane.events.bus import EventBus
from controlplane.leadership import Duty, Leadership
from controlplane.reconciler.loop import Reconciler
from controlplane.reconciler.model import BackoffPolicy
from controlplane.state import AGENT_HTTP_TLS, AGENT_POOL, RECONCILER, REGISTRY_SECRETS, SLOT_MOVER
from controlplane.volumes.drain import NodeDrain
from controlplane.volumes.moves import SlotMover
from controlplane.volumes.sweep import VolumeSweep

#: NOTIFY channel that wakes the leader's reconciler (empty payload).
WAKE_CHANNEL = "encedeus_wake"


class ClusterReconciler(Reconciler):
    """The reconciler whose :meth:`wake` reaches the leader, wherever it is called."""

    notifier: Notifier | None = None

    def wake(self) -> None:
        super().wake()
        if self.notifier is not None:
            self.notifier.notify_soon(WAKE_CHANNEL, "")

    def wake_here(self) -> None:
        """Wake this process's reconciler only (what a wake notification does)."""
        super().wake()


def install_orchestration(
    app: web.Application,
    config: ControlPlaneConfig,
    database: Database,
    bus: EventBus,
    cluster: tuple[Leadership, Notifier],
) -> tuple[AgentPool, Reconciler]:
    """Create the pool and reconciler, store them under AGENT_POOL / RECONCILER, and
    register their start/stop (call after the storage context is registered) and
    their duties with the leadership of `cluster`."""
    leadership, notifier = cluster
    agent_ca = _read_ca(config.agent_ca_file)
    pool = AgentPool(
        client_factory=grpc_client_factory(agent_ca),
        grace_seconds=config.node_grace_seconds,
        heartbeat_interval_ms=config.heartbeat_interval_ms,
    )
    reconciler = ClusterReconciler(
        database,
        pool,
        bus=bus,
        interval=config.reconcile_interval_seconds,
        backoff=BackoffPolicy(
            base=config.restart_backoff_base_seconds, cap=config.restart_backoff_cap_seconds
        ),
        registry=app[REGISTRY_SECRETS],
        fence=leadership.fence,
    )
    if database.dialect == "postgresql":
        reconciler.notifier = notifier
    nodes_changed = asyncio.Event()

    def woken(_payload: str) -> None:
        reconciler.wake_here()
        nodes_changed.set()

    notifier.listen(WAKE_CHANNEL, woken)
    notifier.on_reconnected(lambda: woken(""))  # wake-ups may have been missed

    async def reconcile() -> None:
        reconciler.wake_here()  # a new leader starts from fresh rows
        await reconciler.run()

    leadership.add_duty(Duty("reconciler", reconcile))
    sweep = VolumeSweep(
        database,
        pool,
        grace_seconds=config.volume_grace_seconds,
        interval=config.volume_sweep_interval_seconds,
        fence=leadership.fence,
    )
    leadership.add_duty(Duty("volume-sweep", sweep.run))
    mover = SlotMover(
        database,
        pool,
        reconciler.placement,
        bus,
        fence=leadership.fence,
        password_of=reconciler.calls.registry_password,
        wake=reconciler.wake,
        hold=reconciler.paused,
    )
    drain = NodeDrain(database, mover, interval=config.reconcile_interval_seconds)
    leadership.add_duty(Duty("drain", drain.run))
    app[SLOT_MOVER] = mover
    leadership.add_duty(
        Duty(
            "agent-streams",
            lambda: follow_nodes(database, pool, config.reconcile_interval_seconds, nodes_changed),
            role="follower",
        )
    )
    app[AGENT_POOL] = pool
    app[AGENT_HTTP_TLS] = agent_client_tls(agent_ca)
    app[RECONCILER] = reconciler
    app.cleanup_ctx.append(_run_pool)
    return pool, reconciler


def _read_ca(path: str) -> bytes | None:
    # Read once while the app is assembled, before the event loop serves anything.
    return Path(path).read_bytes() if path else None


async def follow_nodes(
    database: Database, pool: AgentPool, interval: float, changed: asyncio.Event
) -> None:
    """A follower's pool follows the enrolled nodes (the leader's reconciler does it
    on the leader): every `interval` seconds, and at once when `changed` is set."""
    while True:
        changed.clear()
        async with database.session() as session:
            nodes = (await session.exec(select(Node))).all()
        await pool.sync(NodeEndpoint(str(n.id), n.grpc_address, n.secret or "") for n in nodes)
        await wait_set(changed, interval)


async def _run_pool(app: web.Application) -> AsyncIterator[None]:
    pool = app[AGENT_POOL]
    await pool.start()
    try:
        yield
    finally:
        await app[SLOT_MOVER].close()
        await pool.close()
