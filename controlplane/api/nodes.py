"""/v1/nodes: hosts running Skyhook (admin), and their one-time enrolment.

An admin creates a node and gets a join token (shown once, stored as a keyed hash).
The agent presents it to `POST /v1/nodes/enroll` with its addresses and fingerprint
and receives its node id and secret; the token is spent in the same transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import uuid
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from google.protobuf.json_format import MessageToDict
from pydantic import BaseModel, Field, model_validator
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from common.logging import get_logger
from controlplane.agents import AgentClient, AgentError
from controlplane.api.context import database, path_uuid, server_keys
from controlplane.api.errors import Conflict, NotFound, Unauthorized
from controlplane.api.pagination import PageQuery, Pagination, fetch_page
from controlplane.api.schemas import Request
from controlplane.db.engine import Database
from controlplane.db.tables import Node
from controlplane.events.bus import Event, EventType
from controlplane.reconciler.model import LABEL_NODE, LABEL_REPLICA
from controlplane.security.credentials import ServerKeys
from controlplane.state import AGENT_POOL, RECONCILER

log = get_logger(__name__)
JOIN_TOKEN_PREFIX = "encjoin_"  # noqa: S105 - a prefix, not a secret
# How long DELETE /v1/nodes/{id} waits for the agent to remove the containers before
# it deletes the node anyway (the reconciler is paused for that long).
NODE_CLEANUP_TIMEOUT = 30.0


async def record_node_event(
    request: web.Request, session: AsyncSession, kind: EventType, node: Node
) -> None:
    """A system event (admins only) in `session`'s transaction, on the reconciler's bus
    when there is one."""
    reconciler = request.app.get(RECONCILER)
    if reconciler is not None and reconciler.bus is not None:
        event = Event(kind, node_id=str(node.id), data={"name": node.name})
        await reconciler.bus.record(session, event)


def wake_reconciler(request: web.Request) -> None:
    """Ask the reconciler for a pass now (no-op when it is not running)."""
    reconciler = request.app.get(RECONCILER)
    if reconciler is not None:
        reconciler.wake()


class CreateNode(Request):
    """A name, optional scheduling labels and the host port range replicas may use."""

    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    labels: dict[str, str] = Field(default_factory=dict)
    port_range_start: int = Field(default=30000, ge=1, le=65535)
    port_range_end: int = Field(default=30999, ge=1, le=65535)

    @model_validator(mode="after")
    def _ordered(self) -> CreateNode:
        if self.port_range_end < self.port_range_start:
            raise ValueError("port_range_end must not be below port_range_start")
        return self


class NodeInfo(BaseModel):
    """A node as an admin sees it; `status` is pending, ready, down or draining."""

    id: uuid.UUID
    name: str
    status: str
    draining: bool
    labels: dict[str, str]
    grpc_address: str
    http_address: str
    sftp_address: str
    port_range_start: int
    port_range_end: int
    cpu_millis: int
    memory_bytes: int
    disk_bytes: int = 0
    """Room for volumes with a disk limit (the agent's allocatable disk; 0: none)."""
    fingerprint: dict[str, Any]
    host_stats: dict[str, Any]
    created_at: datetime
    enrolled_at: datetime | None
    last_seen: datetime | None


class CreatedNode(NodeInfo):
    """The new node; `join_token` is shown this once."""

    join_token: str


class NodeList(BaseModel):
    """A page of nodes."""

    nodes: list[NodeInfo]
    pagination: Pagination


class DeleteNodeQuery(BaseModel):
    """`?delete_data=true` also removes the replicas' data directories on the host."""

    delete_data: bool = False


class NodeDeleted(BaseModel):
    """The node is gone. `containers_removed` is false when its agent could not be
    reached: its replicas' containers may then still run on the host."""

    message: str
    node_id: uuid.UUID
    containers_removed: bool
    removed_containers: int
    data_deleted: bool


class Enrolment(Request):
    """What an agent sends with its join token."""

    join_token: str = Field(min_length=8, max_length=200)
    grpc_address: str = Field(min_length=1, max_length=255)
    http_address: str = Field(default="", max_length=255)
    sftp_address: str = Field(default="", max_length=255)
    fingerprint: dict[str, Any] = Field(default_factory=dict)
    port_range_start: int | None = Field(default=None, ge=1, le=65535)
    port_range_end: int | None = Field(default=None, ge=1, le=65535)


class Enrolled(BaseModel):
    """The agent's identity from now on; it must store both."""

    node_id: uuid.UUID
    node_secret: str


def node_info(node: Node) -> NodeInfo:
    """The API view of a node row, with live status from the agent pool if known."""
    status = "draining" if node.draining and node.status != "down" else node.status
    return NodeInfo.model_validate({**node.model_dump(), "status": status})


def _live(request: web.Request, node: Node) -> Node:
    pool = request.app.get(AGENT_POOL)
    if pool is None or node.status == "pending":
        return node
    state = pool.state(str(node.id))
    observation = pool.observation(str(node.id))
    live = node.model_copy()
    if state in ("ready", "down"):
        live.status = state
    heard = pool.liveness.last_heard(str(node.id))
    if heard is not None:
        live.last_seen = datetime.fromtimestamp(heard, UTC)
    if observation is not None and observation.host is not None:
        live.host_stats = MessageToDict(observation.host, preserving_proto_field_name=True)
    return live


async def create_node(request: web.Request, body: CreateNode) -> CreatedNode:
    """Register a node and return its one-time join token."""
    return await register_node(database(request), server_keys(request), body)


async def register_node(db: Database, keys: ServerKeys, body: CreateNode) -> CreatedNode:
    """Add a pending node and return it with its one-time join token (stored only as a
    keyed hash). Conflict when the name is taken. `encedeus up` registers its local
    node through here too, so every node enrols the same way."""
    token = JOIN_TOKEN_PREFIX + secrets.token_urlsafe(32)
    node = Node(
        name=body.name,
        labels=body.labels,
        port_range_start=body.port_range_start,
        port_range_end=body.port_range_end,
        join_token_hash=keys.credential_hash(token),
    )
    try:
        async with db.transaction() as session:
            session.add(node)
    except IntegrityError:
        raise Conflict("a node with that name exists", code="node_exists") from None
    return CreatedNode(**node_info(node).model_dump(), join_token=token)


async def list_nodes(request: web.Request, query: PageQuery) -> NodeList:
    """Every node, by name."""
    statement = select(Node).order_by(col(Node.name))
    async with database(request).session() as session:
        nodes, pagination = await fetch_page(session, statement, query)
    return NodeList(nodes=[node_info(_live(request, n)) for n in nodes], pagination=pagination)


async def _get(request: web.Request) -> Node:
    async with database(request).session() as session:
        node = await session.get(Node, path_uuid(request))
    if node is None:
        raise NotFound("no such node", code="node_not_found")
    return node


async def get_node(request: web.Request) -> NodeInfo:
    """One node with its fingerprint, latest host stats, status and last contact."""
    return node_info(_live(request, await _get(request)))


async def _remove_replicas_on(client: AgentClient, node_id: str, delete_data: bool) -> int:
    removed = 0
    for server in await client.list_servers({LABEL_NODE: node_id}):
        if LABEL_REPLICA not in server.spec.labels:
            continue  # not a deployment's replica
        try:
            await client.remove_server(server.spec.id, delete_data=delete_data)
        except AgentError as exc:
            if exc.code != "not_found":
                raise
        removed += 1
    return removed


async def _remove_replica_containers(
    request: web.Request, node: Node, delete_data: bool
) -> int | None:
    """Have the node's agent remove every replica container it runs: how many, or None
    when the agent cannot be reached (or fails) within NODE_CLEANUP_TIMEOUT."""
    if node.status == "pending":
        return 0  # never enrolled: nothing can run there
    pool = request.app.get(AGENT_POOL)
    node_id = str(node.id)
    if pool is None or pool.state(node_id) != "ready":
        return None
    try:
        async with asyncio.timeout(NODE_CLEANUP_TIMEOUT):
            return await _remove_replicas_on(pool.client(node_id), node_id, delete_data)
    except (AgentError, TimeoutError) as exc:
        log.warning("node_cleanup_failed", node_id=node_id, error=str(exc))
        return None


async def delete_node(request: web.Request, query: DeleteNodeQuery) -> NodeDeleted:
    """Remove the node's replica containers through its agent (data kept unless
    `delete_data`), then forget the node; its replicas are rescheduled on the others.
    An unreachable agent does not block the delete: the answer says so."""
    node = await _get(request)
    reconciler = request.app.get(RECONCILER)
    # Paused: a pass must not recreate a container between its removal and the delete.
    async with reconciler.paused() if reconciler else contextlib.nullcontext():
        removed = await _remove_replica_containers(request, node, query.delete_data)
        async with database(request).transaction() as session:
            row = await session.get(Node, node.id)
            if row is not None:
                await session.delete(row)
                await record_node_event(request, session, EventType.NODE_DELETED, node)
    wake_reconciler(request)
    message = (
        "Node deleted successfully"
        if removed is not None
        else "Node deleted; its agent could not be reached, so containers it runs were "
        "not removed from the host"
    )
    return NodeDeleted(
        message=message,
        node_id=node.id,
        containers_removed=removed is not None,
        removed_containers=removed or 0,
        data_deleted=query.delete_data and removed is not None,
    )


async def drain_node(request: web.Request) -> NodeInfo:
    """Take no new work; its slots move off with their data, one at a time
    (controlplane/volumes/drain.py)."""
    node = await _get(request)
    async with database(request).transaction() as session:
        await session.exec(update(Node).where(col(Node.id) == node.id).values(draining=True))
        await record_node_event(request, session, EventType.NODE_DRAINING, node)
    node.draining = True
    wake_reconciler(request)
    return node_info(_live(request, node))


async def undrain_node(request: web.Request) -> NodeInfo:
    """Take new work again (a drain under way stops after the slot it is moving)."""
    node = await _get(request)
    async with database(request).transaction() as session:
        await session.exec(update(Node).where(col(Node.id) == node.id).values(draining=False))
    node.draining = False
    wake_reconciler(request)
    return node_info(_live(request, node))


def _capacity(fingerprint: dict[str, Any]) -> tuple[int, int, int]:
    """CPU (millicores), memory and allocatable disk (bytes) a fingerprint offers."""
    try:
        cpu = int(fingerprint.get("cpu_count", 0)) * 1000
        memory = int(fingerprint.get("memory_bytes", 0))
        disk = int(fingerprint.get("allocatable_disk_bytes", 0))
    except (TypeError, ValueError):
        return 0, 0, 0
    return max(cpu, 0), max(memory, 0), max(disk, 0)


async def enroll_node(request: web.Request, body: Enrolment) -> Enrolled:
    """Exchange a join token (once) for the node's id and secret."""
    digest = server_keys(request).credential_hash(body.join_token)
    secret = secrets.token_urlsafe(32)
    cpu, memory, disk = _capacity(body.fingerprint)
    values: dict[str, Any] = {
        "join_token_hash": None,
        "secret": secret,
        "status": "ready",
        "grpc_address": body.grpc_address,
        "http_address": body.http_address,
        "sftp_address": body.sftp_address,
        "fingerprint": body.fingerprint,
        "cpu_millis": cpu,
        "memory_bytes": memory,
        "disk_bytes": disk,
        "enrolled_at": datetime.now(UTC),
    }
    if body.port_range_start and body.port_range_end:
        values["port_range_start"] = body.port_range_start
        values["port_range_end"] = body.port_range_end
    async with database(request).transaction() as session:
        node = (await session.exec(select(Node).where(col(Node.join_token_hash) == digest))).first()
        if node is None:
            raise Unauthorized("unknown or already used join token", code="invalid_join_token")
        spent = await session.exec(
            update(Node)
            .where(col(Node.id) == node.id, col(Node.join_token_hash) == digest)
            .values(**values)
        )
        if spent.rowcount != 1:
            raise Unauthorized("unknown or already used join token", code="invalid_join_token")
    wake_reconciler(request)
    return Enrolled(node_id=node.id, node_secret=secret)
