"""Volumes left behind: data directories on a node that no slot placed there points at
(docs/stateful.md).

A slot that moved to another node (its node went down, a drain) leaves its directory
on the old node; so did replicas from before volume ids, under their old replica id.
Nothing deletes them silently: they are listed here, for the admin per node
(`GET /v1/nodes/{id}/orphaned-volumes`) and for the owner per deployment
(`GET /v1/deployments/{id}/orphaned-volumes`: the stale copies of its slots; a
directory that belongs to no slot at all cannot be attributed and is admin-only).
Listing asks the agents (`NodeInfo.volumes`), so it covers the nodes that answer;
the others are named in `unreachable_nodes`. A volume whose slot was removed
(scale-down, or its deployment deleted with `delete_data=true`) carries its release
record (controlplane/db/tables/volumes.py): when it was released and from when it
may be removed (`delete_after`: after `volume_grace_seconds` for scale-down).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta

from aiohttp import web
from sqlmodel import select

from controlplane.api.context import database, path_uuid, settings
from controlplane.api.deployments import owned_deployment
from controlplane.api.errors import NotFound
from controlplane.db.tables import Node, ReleasedVolume, Replica
from controlplane.db.tables.tasks import Task
from controlplane.state import AGENT_POOL
from controlplane.volumes.orphans import (
    OrphanedVolume,
    OrphanedVolumes,
    node_volumes,
    orphaned_on,
)


async def _node_ids(request: web.Request) -> list[str]:
    async with database(request).session() as session:
        return [str(n) for n in (await session.exec(select(Node.id))).all()]


async def _orphaned(request: web.Request, node_ids: Iterable[str]) -> OrphanedVolumes:
    async with database(request).session() as session:
        replicas = list((await session.exec(select(Replica))).all())
        tasks = {str(t) for t in (await session.exec(select(Task.id))).all()}
        released = {str(r.volume_id): r for r in (await session.exec(select(ReleasedVolume)))}
    grace = timedelta(seconds=settings(request).volume_grace_seconds)
    volumes: list[OrphanedVolume] = []
    unreachable: list[str] = []
    for node_id in node_ids:
        listed = await node_volumes(request.app.get(AGENT_POOL), node_id)
        if listed is None:
            unreachable.append(node_id)
        else:
            volumes.extend(orphaned_on(node_id, listed, replicas, tasks, released, grace))
    return OrphanedVolumes(volumes=volumes, unreachable_nodes=unreachable)


async def node_orphaned_volumes(request: web.Request) -> OrphanedVolumes:
    """Admin: the volumes on one node that no slot there points at."""
    node_id = path_uuid(request)
    async with database(request).session() as session:
        if await session.get(Node, node_id) is None:
            raise NotFound("no such node", code="node_not_found")
    return await _orphaned(request, [str(node_id)])


async def deployment_orphaned_volumes(request: web.Request) -> OrphanedVolumes:
    """Owner or admin: stale copies of the deployment's slots on the nodes they left,
    and the data of its slots removed by scale-down (until it is removed)."""
    deployment = await owned_deployment(request)
    found = await _orphaned(request, await _node_ids(request))
    mine = str(deployment.id)
    found.volumes = [v for v in found.volumes if v.deployment_id == mine]
    return found
