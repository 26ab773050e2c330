"""Puts the agent pool and the reconciler on the application.

Both are built at once (no I/O) so that other components can reach them while the
app is assembled — the task runner places and runs task containers through the same
:class:`AgentPool` — and are started by a cleanup context after the database is
migrated, and stopped before it closes.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web

from common.cancellation import cancel_and_wait
from controlplane.agents import AgentPool, grpc_client_factory
from controlplane.config import ControlPlaneConfig
from controlplane.db.engine import Database
from controlplane.events.bus import EventBus
from controlplane.reconciler.loop import Reconciler
from controlplane.reconciler.model import BackoffPolicy
from controlplane.state import AGENT_POOL, RECONCILER, REGISTRY_SECRETS


def install_orchestration(
    app: web.Application, config: ControlPlaneConfig, database: Database, bus: EventBus
) -> tuple[AgentPool, Reconciler]:
    """Create the pool and reconciler, store them under AGENT_POOL / RECONCILER, and
    register their start/stop (call after the storage context is registered)."""
    pool = AgentPool(
        client_factory=grpc_client_factory(_read_ca(config.agent_ca_file)),
        grace_seconds=config.node_grace_seconds,
        heartbeat_interval_ms=config.heartbeat_interval_ms,
    )
    reconciler = Reconciler(
        database,
        pool,
        bus=bus,
        interval=config.reconcile_interval_seconds,
        backoff=BackoffPolicy(
            base=config.restart_backoff_base_seconds, cap=config.restart_backoff_cap_seconds
        ),
        registry=app[REGISTRY_SECRETS],
    )
    app[AGENT_POOL] = pool
    app[RECONCILER] = reconciler
    app.cleanup_ctx.append(_run_orchestration)
    return pool, reconciler


def _read_ca(path: str) -> bytes | None:
    # Read once while the app is assembled, before the event loop serves anything.
    return Path(path).read_bytes() if path else None


async def _run_orchestration(app: web.Application) -> AsyncIterator[None]:
    pool, reconciler = app[AGENT_POOL], app[RECONCILER]
    await pool.start()
    loop = asyncio.create_task(reconciler.run(), name="reconciler")
    reconciler.wake()
    try:
        yield
    finally:
        await cancel_and_wait(loop)
        await pool.close()
