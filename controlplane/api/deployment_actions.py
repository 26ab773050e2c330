"""/v1/deployments/{id}/start|stop|restart|kill|command|console.

start/stop change the desired state (the reconciler starts or stops containers);
restart, kill and command act on the running replicas at once through their agents.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from aiohttp import web
from sqlmodel import col, select

from common.tokens import sign_server_token
from controlplane.agents import AgentClient, AgentError
from controlplane.agents.http_urls import agent_http_base, reported_http_url, socket_url
from controlplane.api.context import current_user, database
from controlplane.api.deployment_schemas import (
    CommandSent,
    ConsoleAccess,
    ConsoleCommand,
    ConsoleQuery,
    DeploymentChanged,
)
from controlplane.api.deployments import owned_deployment, save
from controlplane.api.errors import ApiError, Conflict, NotFound
from controlplane.db.tables import Deployment, Node, Replica
from controlplane.state import AGENT_POOL

T = TypeVar("T")
CONSOLE_TOKEN_TTL = 300


class AgentUnavailable(ApiError):
    """503: the node that runs the replica cannot be reached now."""

    status, code = 503, "agent_unavailable"


async def deployment_replicas(request: web.Request, deployment: Deployment) -> list[Replica]:
    """The deployment's replicas by ordinal."""
    async with database(request).session() as session:
        rows = await session.exec(
            select(Replica)
            .where(col(Replica.deployment_id) == deployment.id)
            .order_by(col(Replica.ordinal))
        )
        return list(rows.all())


def agent_for(request: web.Request, replica: Replica) -> AgentClient | None:
    """The client of the replica's node, or None when it is not connected and ready."""
    pool = request.app.get(AGENT_POOL)
    if pool is None or replica.node_id is None:
        return None
    node_id = str(replica.node_id)
    if pool.state(node_id) != "ready":
        return None
    try:
        return pool.client(node_id)
    except AgentError:
        return None


async def on_each_replica(
    request: web.Request,
    deployment: Deployment,
    call: Callable[[AgentClient, str], Awaitable[T]],
    ordinal: int | None = None,
) -> int:
    """Run `call` for every reachable replica concurrently; how many succeeded."""
    replicas = [
        r
        for r in await deployment_replicas(request, deployment)
        if ordinal is None or r.ordinal == ordinal
    ]

    async def one(replica: Replica) -> bool:
        client = agent_for(request, replica)
        if client is None:
            return False
        try:
            await call(client, str(replica.id))
        except AgentError:
            return False
        return True

    return sum(await asyncio.gather(*(one(r) for r in replicas)))


async def start_deployment(request: web.Request) -> DeploymentChanged:
    """Run the deployment's replicas again."""
    deployment = await owned_deployment(request)
    await save(request, deployment, {"running": True, "run_since": datetime.now(UTC)})
    return DeploymentChanged(
        id=deployment.id,
        status="running",
        replicas=deployment.replicas,
        message="Deployment started successfully",
    )


async def stop_deployment(request: web.Request) -> DeploymentChanged:
    """Stop every replica (stop command or signal, then kill after the timeout); the
    reconciler carries it out at once."""
    deployment = await owned_deployment(request)
    await save(request, deployment, {"running": False, "status": "stopped"})
    return DeploymentChanged(
        id=deployment.id, status="stopped", message="Deployment stopped successfully"
    )


async def kill_deployment(request: web.Request) -> DeploymentChanged:
    """SIGKILL every replica and keep the deployment stopped."""
    deployment = await owned_deployment(request)
    await save(request, deployment, {"running": False, "status": "stopped"})
    await on_each_replica(request, deployment, lambda c, sid: c.kill_server(sid))
    return DeploymentChanged(
        id=deployment.id, status="stopped", message="Deployment killed successfully"
    )


async def restart_deployment(request: web.Request) -> DeploymentChanged:
    """Restart every replica in place (stop gracefully, then start)."""
    deployment = await owned_deployment(request)
    if not deployment.running:
        raise Conflict("the deployment is stopped; start it instead", code="deployment_stopped")
    done = await on_each_replica(request, deployment, lambda c, sid: c.restart_server(sid))
    return DeploymentChanged(
        id=deployment.id,
        status=deployment.status,
        replicas=deployment.replicas,
        message=f"Restarted {done} replica(s)",
    )


async def send_command(request: web.Request, body: ConsoleCommand) -> CommandSent:
    """Write one line to the stdin of every running replica (or one by ordinal)."""
    deployment = await owned_deployment(request)
    sent = await on_each_replica(
        request,
        deployment,
        lambda c, sid: c.send_command(sid, body.command),
        ordinal=body.replica,
    )
    if sent == 0:
        raise Conflict("no running replica received the command", code="not_running")
    return CommandSent(message="Command sent", sent_to=sent)


async def replica_and_node(
    request: web.Request, deployment: Deployment, ordinal: int
) -> tuple[Replica, Node]:
    """The replica `ordinal` of `deployment` and the node it is placed on: 404 when
    there is none, 503 when the node cannot be reached over HTTP."""
    replica = next(
        (r for r in await deployment_replicas(request, deployment) if r.ordinal == ordinal),
        None,
    )
    if replica is None or replica.node_id is None:
        raise NotFound("no such replica", code="replica_not_found")
    async with database(request).session() as session:
        node = await session.get(Node, replica.node_id)
    if node is None or not node.secret or not node_http_base(request, node):
        raise AgentUnavailable("the replica's node has no console address")
    return replica, node


def node_http_base(request: web.Request, node: Node) -> str:
    """The node's HTTP port as the browser reaches it (controlplane.agents.http_urls)."""
    reported = reported_http_url(request.app[AGENT_POOL], str(node.id))
    return agent_http_base(reported, node.http_address)


def agent_socket_url(request: web.Request, node: Node, path: str) -> str:
    """The ws:// or wss:// URL of `path` on the node's HTTP port."""
    return socket_url(node_http_base(request, node), path)


async def console_access(request: web.Request, query: ConsoleQuery) -> ConsoleAccess:
    """The agent WebSocket URL of one replica's console and a token for it."""
    deployment = await owned_deployment(request)
    replica, node = await replica_and_node(request, deployment, query.replica)
    token = sign_server_token(
        node.secret or "",
        node_id=str(node.id),
        user_id=str(current_user(request).id),
        server_id=str(replica.id),
        permissions=["*"],
        scope="console",
        ttl_seconds=CONSOLE_TOKEN_TTL,
    )
    return ConsoleAccess(
        url=agent_socket_url(request, node, f"/api/servers/{replica.id}/ws"),
        token=token,
        expires_at=datetime.now(UTC) + timedelta(seconds=CONSOLE_TOKEN_TTL),
        server_id=str(replica.id),
        node_id=str(node.id),
    )
