"""Puts the ingress publisher on the application, after the agent pool exists."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from aiohttp import web

from common.cancellation import cancel_and_wait
from controlplane.config import ControlPlaneConfig
from controlplane.db.engine import Database
from controlplane.ingress.publisher import IngressPublisher
from controlplane.state import AGENT_POOL, INGRESS


def default_ask_url(config: ControlPlaneConfig) -> str:
    """`ingress_ask_url`, else this control plane's own ask endpoint on loopback
    (right when the ingress runs on this host; set it otherwise)."""
    if config.ingress_ask_url:
        return config.ingress_ask_url
    host = config.listen_address
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{config.port}/v1/ingress/ask"


def install_ingress(app: web.Application, config: ControlPlaneConfig, database: Database) -> None:
    """Create the publisher under INGRESS (call after install_orchestration)."""
    publisher = IngressPublisher(
        database,
        app[AGENT_POOL],
        config,
        interval=config.reconcile_interval_seconds,
        ask_url=default_ask_url(config),
    )
    app[INGRESS] = publisher
    app.cleanup_ctx.append(_run_ingress)


async def _run_ingress(app: web.Application) -> AsyncIterator[None]:
    task = asyncio.create_task(app[INGRESS].run(), name="ingress-publisher")
    try:
        yield
    finally:
        await cancel_and_wait(task)
