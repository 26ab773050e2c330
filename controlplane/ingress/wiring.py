"""Puts the ingress publisher on the application, after the agent pool exists.

Only the leader pushes routing tables: the publisher is a leader duty of
:mod:`controlplane.leadership`, and any process's :meth:`IngressPublisher.changed`
wakes the leader's publisher through NOTIFY on PostgreSQL.
"""

from __future__ import annotations

from aiohttp import web

from controlplane.config import ControlPlaneConfig
from controlplane.db.engine import Database
from controlplane.db.notify import Notifier
from controlplane.ingress.publisher import INGRESS_CHANNEL, IngressPublisher
from controlplane.leadership import Duty, Leadership
from controlplane.placement import PlacementApplier
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


def install_ingress(
    app: web.Application,
    config: ControlPlaneConfig,
    database: Database,
    cluster: tuple[Leadership, Notifier],
    placement: PlacementApplier,
) -> IngressPublisher:
    """Create the publisher under INGRESS and register it as a leader duty of
    `cluster`'s leadership (call after install_orchestration, before the leadership
    runs); the publisher follows `placement`'s commits."""
    leadership, notifier = cluster
    publisher = IngressPublisher(
        database,
        app[AGENT_POOL],
        config,
        interval=config.reconcile_interval_seconds,
        ask_url=default_ask_url(config),
        notifier=notifier if database.dialect == "postgresql" else None,
        placement=placement,
    )
    notifier.listen(INGRESS_CHANNEL, lambda _payload: publisher.wake_here())
    notifier.on_reconnected(publisher.wake_here)  # wake-ups may have been missed
    leadership.add_duty(Duty("ingress-publisher", publisher.lead))
    app[INGRESS] = publisher
    return publisher
