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

import asyncio
from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import datetime, timedelta

from aiohttp import web
from pydantic import BaseModel
from sqlmodel import select

from controlplane.agents import AgentError
from controlplane.api.context import database, path_uuid, settings
from controlplane.api.deployments import owned_deployment
from controlplane.api.errors import NotFound
from controlplane.db.tables import Node, ReleasedVolume, Replica
from controlplane.db.tables.tasks import Task
from controlplane.state import AGENT_POOL
from protos import agent_pb2 as pb

NODE_ANSWER_TIMEOUT = 5.0


class OrphanedVolume(BaseModel):
    """A data directory on `node_id` that no slot placed there points at.

    `deployment_id`/`ordinal` name the slot it belongs to when that slot still exists
    (it runs elsewhere now: this is a stale copy) or was released (then
    `released_at`/`delete_after` say when, and from when it may be removed); null
    for a directory nothing records."""

    volume_id: str
    node_id: str
    disk_limit_bytes: int
    used_bytes: int
    deployment_id: str | None = None
    ordinal: int | None = None
    released_at: datetime | None = None
    delete_after: datetime | None = None


class OrphanedVolumes(BaseModel):
    """The orphaned volumes found, and the nodes that could not be asked."""

    volumes: list[OrphanedVolume]
    unreachable_nodes: list[str]


def orphaned_on(
    node_id: str,
    listed: Iterable[pb.VolumeInfo],
    replicas: Sequence[Replica],
    task_ids: Collection[str],
    released: Mapping[str, ReleasedVolume] | None = None,
    grace: timedelta = timedelta(0),
) -> list[OrphanedVolume]:
    """The volumes `listed` by `node_id` that none of its replicas uses (by volume id,
    or by its own id for a directory named before volume ids) and no task owns;
    `released` are the release records by volume id, kept `grace` by default."""
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
        orphan = OrphanedVolume(
            volume_id=volume.id,
            node_id=node_id,
            disk_limit_bytes=volume.disk_limit_bytes,
            used_bytes=volume.used_bytes,
        )
        slot = slots.get(volume.id)
        release = (released or {}).get(volume.id)
        if slot is not None:
            orphan.deployment_id, orphan.ordinal = str(slot.deployment_id), slot.ordinal
        elif release is not None:
            orphan.deployment_id, orphan.ordinal = str(release.deployment_id), release.ordinal
            orphan.released_at = release.released_at
            orphan.delete_after = release.delete_after or release.released_at + grace
        found.append(orphan)
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
        listed = await _listed(request, node_id)
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
