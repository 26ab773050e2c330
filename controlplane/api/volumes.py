"""Volumes left behind: data directories on a node that no slot placed there points at
(docs/stateful.md).

A slot that moved to another node (its node went down, a drain) leaves its directory
on the old node; so did replicas from before volume ids, under their old replica id.
Nothing deletes them silently: they are listed here, for the admin per node
(`GET /v1/nodes/{id}/orphaned-volumes`) and for the owner per deployment
(`GET /v1/deployments/{id}/orphaned-volumes`: the stale copies of its slots; a
directory that belongs to no slot at all cannot be attributed and is admin-only).
Listing asks the agents (`NodeInfo.volumes`), so it covers the nodes that answer;
the others are named in `unreachable_nodes`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Iterable, Sequence

from aiohttp import web
from pydantic import BaseModel
from sqlmodel import select

from controlplane.agents import AgentError
from controlplane.api.context import database, path_uuid
from controlplane.api.deployments import owned_deployment
from controlplane.api.errors import NotFound
from controlplane.db.tables import Node, Replica
from controlplane.db.tables.tasks import Task
from controlplane.state import AGENT_POOL
from protos import agent_pb2 as pb

NODE_ANSWER_TIMEOUT = 5.0


class OrphanedVolume(BaseModel):
    """A data directory on `node_id` that no slot placed there points at.

    `deployment_id`/`ordinal` name the slot it belongs to when that slot still exists
    (it runs elsewhere now: this is a stale copy), else both are null."""

    volume_id: str
    node_id: str
    disk_limit_bytes: int
    used_bytes: int
    deployment_id: str | None = None
    ordinal: int | None = None


class OrphanedVolumes(BaseModel):
    """The orphaned volumes found, and the nodes that could not be asked."""

    volumes: list[OrphanedVolume]
    unreachable_nodes: list[str]


def orphaned_on(
    node_id: str,
    listed: Iterable[pb.VolumeInfo],
    replicas: Sequence[Replica],
    task_ids: Collection[str],
) -> list[OrphanedVolume]:
    """The volumes `listed` by `node_id` that none of its replicas uses (by volume id,
    or by its own id for a directory named before volume ids) and no task owns."""
    in_use = {
        name
        for r in replicas
        if r.node_id is not None and str(r.node_id) == node_id
        for name in (str(r.slot_volume), str(r.id))
    }
    slots = {str(r.slot_volume): r for r in replicas}
    found: list[OrphanedVolume] = []
    for volume in listed:
        if volume.id in in_use or volume.id in task_ids:
            continue
        slot = slots.get(volume.id)
        found.append(
            OrphanedVolume(
                volume_id=volume.id,
                node_id=node_id,
                disk_limit_bytes=volume.disk_limit_bytes,
                used_bytes=volume.used_bytes,
                deployment_id=str(slot.deployment_id) if slot else None,
                ordinal=slot.ordinal if slot else None,
            )
        )
    return found


async def _listed(request: web.Request, node_id: str) -> list[pb.VolumeInfo] | None:
    """The volumes the node's agent reports now; None when it cannot answer."""
    pool = request.app.get(AGENT_POOL)
    if pool is None or pool.state(node_id) != "ready":
        return None
    try:
        async with asyncio.timeout(NODE_ANSWER_TIMEOUT):
            info = await pool.client(node_id).get_node_info()
    except (AgentError, TimeoutError):
        return None
    return list(info.volumes)


async def _rows(request: web.Request) -> tuple[list[Replica], set[str], list[str]]:
    async with database(request).session() as session:
        replicas = list((await session.exec(select(Replica))).all())
        tasks = {str(t) for t in (await session.exec(select(Task.id))).all()}
        nodes = [str(n) for n in (await session.exec(select(Node.id))).all()]
    return replicas, tasks, nodes


async def _orphaned(request: web.Request, node_ids: Iterable[str]) -> OrphanedVolumes:
    replicas, tasks, _ = await _rows(request)
    volumes: list[OrphanedVolume] = []
    unreachable: list[str] = []
    for node_id in node_ids:
        listed = await _listed(request, node_id)
        if listed is None:
            unreachable.append(node_id)
        else:
            volumes.extend(orphaned_on(node_id, listed, replicas, tasks))
    return OrphanedVolumes(volumes=volumes, unreachable_nodes=unreachable)


async def node_orphaned_volumes(request: web.Request) -> OrphanedVolumes:
    """Admin: the volumes on one node that no slot there points at."""
    node_id = path_uuid(request)
    async with database(request).session() as session:
        if await session.get(Node, node_id) is None:
            raise NotFound("no such node", code="node_not_found")
    return await _orphaned(request, [str(node_id)])


async def deployment_orphaned_volumes(request: web.Request) -> OrphanedVolumes:
    """Owner or admin: stale copies of the deployment's slots on the nodes they left."""
    deployment = await owned_deployment(request)
    _, _, nodes = await _rows(request)
    found = await _orphaned(request, nodes)
    mine = str(deployment.id)
    found.volumes = [v for v in found.volumes if v.deployment_id == mine]
    return found
