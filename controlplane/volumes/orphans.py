"""Which data directories on a node no slot placed there points at (docs/stateful.md).

The listings of the API (controlplane/api/volumes.py) and the sweep that
deletes due copies (controlplane/volumes/sweep.py) both start from
:func:`node_volumes` and the pure :func:`orphaned_on`, so they never disagree about
what is an orphan.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import datetime, timedelta

from pydantic import BaseModel

from controlplane.agents import AgentError, AgentPool
from controlplane.db.tables import ReleasedVolume, Replica
from protos import agent_pb2 as pb


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


NODE_ANSWER_TIMEOUT = 5.0


async def node_volumes(pool: AgentPool | None, node_id: str) -> list[pb.VolumeInfo] | None:
    """The volumes the node's agent reports now; None when it cannot answer."""
    if pool is None or pool.state(node_id) != "ready":
        return None
    try:
        async with asyncio.timeout(NODE_ANSWER_TIMEOUT):
            info = await pool.client(node_id).get_node_info()
    except (AgentError, TimeoutError):
        return None
    return list(info.volumes)
