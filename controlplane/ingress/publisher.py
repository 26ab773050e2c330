"""Keeps every ingress node serving the current routing table.

The table is rebuilt from the database and the agents' observations whenever the
agent pool signals a change (a replica started, stopped, failed health, moved; a
node came or went), whenever a placement commits (a move's new node is written after
its target started), and at least every `interval` seconds (deployments stopped,
deleted or renamed through the API). A new table gets a new version; every ingress
node whose heartbeat reports another version (an older table, or 0 after its Caddy
restarted empty) gets the table again — so drift heals within a heartbeat or two.

With several control planes only the leader publishes: :meth:`lead` is a leader duty
(see :mod:`controlplane.ingress.wiring`). Every process keeps its own agent streams,
so a new leader knows at once which table each ingress serves; it mints a new version
and sends it to all of them. A change made through a follower (a custom domain added
or removed) reaches the leader over NOTIFY (:data:`INGRESS_CHANNEL`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping

from sqlmodel import select

from common.cancellation import wait_set
from common.logging import get_logger
from controlplane.agents.client import AgentError
from controlplane.agents.pool import AgentPool, NodeSignal
from controlplane.config import ControlPlaneConfig
from controlplane.db.engine import Database
from controlplane.db.notify import Notifier
from controlplane.db.tables import CustomDomain, Deployment, Node, Replica
from controlplane.ingress.table import NodeReach, build_routes, node_reach
from controlplane.placement import PlacementApplier
from protos import agent_pb2 as pb

log = get_logger(__name__)
# A node that did not take a table is not asked again sooner than this.
RETRY_SECONDS = 1.0
#: NOTIFY channel that wakes the leader's publisher (empty payload).
INGRESS_CHANNEL = "encedeus_ingress"


class IngressPublisher:
    """Owns the routing table; :meth:`lead` until cancelled. :meth:`changed` asks the
    leader's publisher for a rebuild now; this process's own pool signals wake only
    this process's publisher (the leader's pool sees every node too)."""

    def __init__(
        self,
        database: Database,
        pool: AgentPool,
        config: ControlPlaneConfig,
        *,
        interval: float = 1.0,
        ask_url: str = "",
        notifier: Notifier | None = None,
        placement: PlacementApplier | None = None,
    ) -> None:
        self.database, self.pool, self.config = database, pool, config
        self.interval, self.ask_url, self.notifier = interval, ask_url, notifier
        self.table = pb.RouteTable()
        self._wake = asyncio.Event()
        self._sent: dict[str, tuple[int, float]] = {}
        pool.add_listener(self._on_signal)
        if placement is not None:  # a move commits after its target's start signal
            placement.add_listener(self.wake_here)

    def _on_signal(self, signal: NodeSignal) -> None:
        self.wake_here()

    def changed(self) -> None:
        """Rebuild and push as soon as possible, on whichever control plane leads
        (callable from any coroutine)."""
        self.wake_here()
        if self.notifier is not None:
            self.notifier.notify_soon(INGRESS_CHANNEL, "")

    def wake_here(self) -> None:
        """Wake this process's publisher only (what a wake notification does)."""
        self._wake.set()

    async def lead(self) -> None:
        """Publish until cancelled, from a fresh start: a table that another leader may
        have superseded meanwhile is never sent again under its old version."""
        self.table = pb.RouteTable()
        self._sent.clear()
        await self.run()

    async def run(self) -> None:
        while True:
            try:
                await self.publish_once()
            except Exception:  # a bad pass must not end ingress updates for good
                log.exception("ingress_publish_failed")
            if await wait_set(self._wake, self.interval):
                await asyncio.sleep(0.05)  # coalesce the burst of signals one change makes
            self._wake.clear()

    async def publish_once(self) -> None:
        """Rebuild the table; send it to every ingress node not serving it."""
        routes, challenges = await self._routes()
        candidate = self._table(routes, self.table.version, challenges)
        if candidate != self.table:
            # Versions are wall-clock milliseconds so that a restarted control plane
            # never reuses one an ingress still serves.
            version = max(int(time.time() * 1000), self.table.version + 1)
            self.table = self._table(routes, version, challenges)
        await asyncio.gather(*(self._push(n) for n in self._ingress_nodes()))

    def _table(
        self, routes: list[pb.Route], version: int, challenges: Mapping[str, str]
    ) -> pb.RouteTable:
        tls = self.config.ingress_tls
        return pb.RouteTable(
            version=version,
            routes=routes,
            tls_issuer="" if tls == "off" else tls,
            ask_url=self.ask_url if tls == "acme" else "",
            challenges=challenges,
        )

    async def _routes(self) -> tuple[list[pb.Route], dict[str, str]]:
        """The routes, and the HTTP tokens of pending custom domains."""
        async with self.database.session() as session:
            deployments = (await session.exec(select(Deployment))).all()
            replicas = (await session.exec(select(Replica))).all()
            nodes = (await session.exec(select(Node))).all()
            claims = (await session.exec(select(CustomDomain))).all()
        domains: dict[str, list[str]] = {}
        challenges: dict[str, str] = {}
        for claim in sorted(claims, key=lambda c: (c.created_at, c.domain)):
            if claim.state == "verified":
                domains.setdefault(str(claim.deployment_id), []).append(claim.domain)
            else:
                challenges[claim.token] = claim.domain
        reach: dict[str, NodeReach] = {}
        for node in nodes:
            observation = self.pool.observation(str(node.id))
            if observation is None or observation.servers is None:
                continue
            if self.pool.state(str(node.id)) != "ready":
                continue
            servers = observation.servers.values()
            reach[str(node.id)] = node_reach(node.grpc_address, observation.info, servers)
        routes = build_routes(
            deployments,
            replicas,
            reach,
            suffix=self.config.domain_suffix,
            tls=self.config.ingress_tls != "off",
            domains=domains,
        )
        return routes, challenges

    def _ingress_nodes(self) -> list[str]:
        out = []
        for node_id in self.pool.node_ids():
            observation = self.pool.observation(node_id)
            if observation is None or observation.info is None:
                continue
            if observation.info.ingress.enabled and self.pool.state(node_id) == "ready":
                out.append(node_id)
        return out

    async def _push(self, node_id: str) -> None:
        observation = self.pool.observation(node_id)
        if observation is None or observation.routes_version == self.table.version:
            return
        now = time.monotonic()
        version_sent, sent_at = self._sent.get(node_id, (0, 0.0))
        if version_sent == self.table.version and now - sent_at < RETRY_SECONDS:
            return  # in flight, or its heartbeat predates it
        self._sent[node_id] = (self.table.version, now)
        try:
            version = await self.pool.client(node_id).apply_routes(self.table)
        except AgentError as exc:
            log.warning("ingress_apply_failed", node_id=node_id, code=exc.code, error=str(exc))
            return
        observation.routes_version = version
        log.info("ingress_applied", node_id=node_id, version=version)
