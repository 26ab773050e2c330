"""`POST /v1/deployments/{id}/replicas/{ordinal}/move`: move a slot to another live node
with its data (docs/stateful.md, "Transfers"). Owner or admin; `node_id` picks the
target, otherwise it is placed like any replica. The move runs in the background
(202): its progress is in the deployment's status (`instances[].transfer`) and on the
notifications WebSocket (`replica_transfer_progress`, then `replica_moved` or
`replica_move_failed`).
"""

from __future__ import annotations

import uuid

from aiohttp import web
from pydantic import BaseModel

from controlplane.api.deployments import owned_deployment
from controlplane.api.errors import ApiError, NotFound
from controlplane.api.schemas import Request
from controlplane.state import SLOT_MOVER
from controlplane.volumes.moves import MoveRefused

NOT_FOUND_CODES = frozenset({"replica_not_found", "node_not_found"})


class MoveReplica(Request):
    """Where to: a node id, or none to let placement choose."""

    node_id: uuid.UUID | None = None


class MoveStarted(BaseModel):
    """The move under way: follow it in the status and on the notifications socket."""

    deployment_id: str
    ordinal: int
    replica_id: str
    volume_id: str
    from_node_id: str
    to_node_id: str
    status: str = "moving"


class MoveConflict(ApiError):
    """409: the slot cannot be moved now (the code says why)."""

    status, code = 409, "move_refused"


async def move_replica(request: web.Request, body: MoveReplica) -> MoveStarted:
    """Start moving the slot; 404 for an unknown slot or node, 409 when it cannot move."""
    deployment = await owned_deployment(request)
    try:
        ordinal = int(request.match_info["ordinal"])
    except ValueError:
        raise NotFound("the deployment has no such replica", code="replica_not_found") from None
    mover = request.app[SLOT_MOVER]
    target = str(body.node_id) if body.node_id else None
    try:
        plan = await mover.plan(deployment.id, ordinal, target)
    except MoveRefused as refused:
        if refused.code in NOT_FOUND_CODES:
            raise NotFound(str(refused), code=refused.code) from None
        raise MoveConflict(str(refused), code=refused.code) from None
    mover.start(plan)
    return MoveStarted(
        deployment_id=str(deployment.id),
        ordinal=ordinal,
        replica_id=str(plan.replica.id),
        volume_id=str(plan.replica.slot_volume),
        from_node_id=plan.source,
        to_node_id=str(plan.target.id),
    )
