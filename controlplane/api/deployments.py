"""/v1/deployments: create, list, get, update, scale, delete.

Handlers only change desired state in the database and wake the reconciler, which
places and starts the replicas. A deployment is visible to its owner alone: any other
account gets 404 for every route under its id.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from sqlalchemy import delete, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.exc import StaleDataError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from common.quantities import parse_cpu_millis, parse_disk_bytes, parse_memory_bytes
from controlplane.agents import AgentError
from controlplane.api.context import current_user, database, path_uuid, settings
from controlplane.api.deployment_images import (
    IMAGE_SPEC_FIELDS,
    check_image_access,
    checked_image,
    image_values,
    registry_auth_view,
)
from controlplane.api.deployment_schemas import (
    CreatedDeployment,
    CreateDeployment,
    DeletedDeployment,
    DeleteQuery,
    DeploymentChanged,
    DeploymentDetails,
    DeploymentList,
    DeploymentQuery,
    DeploymentSummary,
    ScaleDeployment,
    UpdateDeployment,
)
from controlplane.api.deployment_templates import template_values
from controlplane.api.errors import Conflict, NotFound, Unprocessable
from controlplane.api.nodes import wake_reconciler
from controlplane.api.pagination import fetch_page
from controlplane.db.tables import Deployment, ReleasedVolume, Replica
from controlplane.db.types import utcnow
from controlplane.events.bus import Event
from controlplane.events.deployment_events import (
    deployment_created,
    deployment_deleted,
    deployment_status_changed,
)
from controlplane.ingress.table import app_url, web_port_index
from controlplane.port_protocols import protocol_at
from controlplane.quota_enforcement import Claim, enforce_quota
from controlplane.state import AGENT_POOL, RECONCILER

# Fields whose change needs new containers (a rolling update).
UPDATE_ATTEMPTS = 20  # each lost race means another update won: progress is made
SPEC_FIELDS = (
    "image",
    "command",
    "env_vars",
    "ports",
    "port_protocols",
    "cpu",
    "memory",
    "disk_bytes",
    "health_check",
    "stop_command",
    "stop_signal",
    "stop_timeout",
    "run_as_root",
    *IMAGE_SPEC_FIELDS,
)


async def record_event(request: web.Request, session: AsyncSession, event: Event) -> None:
    """Write `event` in `session`'s transaction, on the reconciler's event bus when
    there is one."""
    reconciler = request.app.get(RECONCILER)
    if reconciler is not None and reconciler.bus is not None:
        await reconciler.bus.record(session, event)


def deployment_url(request: web.Request, deployment: Deployment) -> str | None:
    """Where the ingress serves the app (scheme and port included), when a domain
    suffix is configured and the app has a web port (None otherwise: the ingress has
    no route for it)."""
    if web_port_index(deployment) is None:
        return None
    return app_url(settings(request), deployment.app_name)


async def owned_deployment(request: web.Request) -> Deployment:
    """The caller's deployment named by the path, or 404 (also for other owners')."""
    deployment_id = path_uuid(request)
    async with database(request).session() as session:
        deployment = await session.get(Deployment, deployment_id)
    if deployment is None or deployment.user_id != current_user(request).id:
        raise NotFound("no such deployment", code="deployment_not_found")
    return deployment


def _summary(request: web.Request, d: Deployment) -> DeploymentSummary:
    return DeploymentSummary(
        id=d.id,
        app_name=d.app_name,
        image=d.image,
        status=d.status,
        url=deployment_url(request, d),
        replicas=d.replicas,
        created_at=d.created_at,
        updated_at=d.updated_at,
    )


def _details(request: web.Request, d: Deployment) -> DeploymentDetails:
    hidden = set() if current_user(request).is_admin else set((d.template or {}).get("hidden", []))
    return DeploymentDetails(
        **_summary(request, d).model_dump(),
        user_id=d.user_id,
        port=d.ports[0] if d.ports else None,
        ports=list(d.ports),
        port_protocols=[protocol_at(d.port_protocols, i) for i in range(len(d.ports))],
        http_port=d.http_port,
        command=list(d.command),
        env_vars={k: v for k, v in d.env_vars.items() if k not in hidden},
        resources={"cpu": d.cpu, "memory": d.memory, "disk": d.disk},
        health_check=d.health_check,
        restart_policy=d.restart_policy,
        stop_command=d.stop_command,
        stop_signal=d.stop_signal,
        stop_timeout=d.stop_timeout,
        run_as_root=d.run_as_root,
        template=_template_summary(d.template, hidden),
        strategy=d.strategy,
        constraints=dict(d.constraints),
        on_node_loss=d.on_node_loss,
        move_after_seconds=d.move_after_seconds,
        generation=d.generation,
        deployed_at=d.deployed_at,
        error_message=d.error_message,
        error_code=d.error_code,
        pull_policy=d.pull_policy,
        registry_auth=registry_auth_view(d),
        image_digest=d.image_digest or None,
    )


def _template_summary(record: dict[str, Any] | None, hidden: set[str]) -> dict[str, Any] | None:
    """The template a deployment was made from, without the variables its owner may
    not see (user_viewable = false; admins see them)."""
    if not record:
        return None
    summary = {k: record.get(k) for k in ("id", "version", "image_label")}
    values = dict(record.get("variables") or {})
    summary["variables"] = {k: v for k, v in values.items() if k not in hidden}
    return summary


def _options(body: CreateDeployment | UpdateDeployment) -> dict[str, Any]:
    values: dict[str, Any] = {}
    command = body.command_list()
    if command is not None:
        values["command"] = command
    if body.env_vars is not None:
        values["env_vars"] = dict(body.env_vars)
    if body.resources is not None:
        values["cpu"], values["memory"] = body.resources.cpu, body.resources.memory
        values["cpu_millis"] = parse_cpu_millis(body.resources.cpu)
        values["memory_bytes"] = parse_memory_bytes(body.resources.memory)
        values["disk"] = body.resources.disk
        values["disk_bytes"] = parse_disk_bytes(body.resources.disk) if body.resources.disk else 0
    if body.health_check is not None:
        values["health_check"] = body.health_check.model_dump(exclude_none=True)
    for name in ("restart_policy", "stop_command", "stop_signal", "stop_timeout", "run_as_root"):
        if getattr(body, name) is not None:
            values[name] = getattr(body, name)
    if body.on_node_loss is not None:
        values["on_node_loss"] = body.on_node_loss
        if body.on_node_loss == "move":
            values["move_after_seconds"] = None
    if body.move_after is not None:
        values["move_after_seconds"] = int(body.move_after) or None  # 0: never
    return values


async def create_deployment(request: web.Request, body: CreateDeployment) -> CreatedDeployment:
    """Create a deployment; its replicas are placed and started right away."""
    user = current_user(request)
    deployment = Deployment(
        user_id=user.id,
        app_name=body.app_name,
        image=body.image or "",
        ports=body.all_ports(),
        port_protocols=body.port_protocols(),
        http_port=body.http_port,
        replicas=body.replicas,
        strategy=body.strategy,
        constraints=dict(body.constraints),
        # A template's server keeps its world: it waits for its node unless told.
        on_node_loss=body.on_node_loss or ("wait" if body.template else "move"),
    )
    if body.move_after and deployment.on_node_loss != "wait":
        raise Unprocessable(
            "move_after goes with on_node_loss = wait", code="move_after_needs_wait"
        )
    options = {**_options(body), **image_values(request, body, deployment.id)}
    if body.template is not None:
        options = {**options, **await template_values(request, body)}
        # The template chose the image: the operator's allowlist holds for it too.
        checked_image(request, str(options.get("image", "")))
    for name, value in options.items():
        setattr(deployment, name, value)
    await check_image_access(request, deployment, body)
    try:
        async with database(request).transaction() as session:
            await enforce_quota(session, user.id, Claim.of(deployment))
            session.add(deployment)
            # Flushed first: a taken name fails here, before the event lock is taken.
            await session.flush()
            await record_event(request, session, deployment_created(deployment))
    except IntegrityError:
        raise Conflict("an app with that name exists", code="app_name_taken") from None
    wake_reconciler(request)
    return CreatedDeployment(
        id=deployment.id,
        app_name=deployment.app_name,
        image=deployment.image,
        status=deployment.status,
        url=deployment_url(request, deployment),
        created_at=deployment.created_at,
        message="Deployment is being processed",
    )


async def list_deployments(request: web.Request, query: DeploymentQuery) -> DeploymentList:
    """The caller's deployments, newest first, optionally by status."""
    statement = select(Deployment).where(col(Deployment.user_id) == current_user(request).id)
    if query.status is not None:
        statement = statement.where(col(Deployment.status) == query.status)
    statement = statement.order_by(col(Deployment.created_at).desc(), col(Deployment.id))
    async with database(request).session() as session:
        rows, pagination = await fetch_page(session, statement, query)
    return DeploymentList(deployments=[_summary(request, d) for d in rows], pagination=pagination)


async def get_deployment(request: web.Request) -> DeploymentDetails:
    """One deployment with its whole configuration."""
    return _details(request, await owned_deployment(request))


async def save(request: web.Request, deployment: Deployment, values: dict[str, Any]) -> None:
    """Write `values` onto the caller's deployment and wake the reconciler. A status
    it changes (a stop, a kill) is announced as `deployment_status_changed` in the
    same transaction: the reconciler only announces the statuses it derives itself."""
    values["updated_at"] = datetime.now(UTC)
    try:
        async with database(request).transaction() as session:
            row = await session.get(Deployment, deployment.id)
            if row is None:
                raise NotFound("no such deployment", code="deployment_not_found")
            await enforce_quota(session, row.user_id, Claim.deployment_change(row.id, values))
            status_before = row.status
            for name, value in values.items():
                setattr(row, name, value)
                setattr(deployment, name, value)
            session.add(row)
            if row.status != status_before:
                await session.flush()  # a deletion racing this change fails here, first
                await record_event(request, session, deployment_status_changed(row))
    except StaleDataError:
        # Deleted between the read and the write (a DELETE racing this change).
        raise NotFound("no such deployment", code="deployment_not_found") from None
    wake_reconciler(request)


async def _save_unless_changed_meanwhile(
    request: web.Request, deployment: Deployment, values: dict[str, Any]
) -> bool:
    """Write `values` only if the row still has the generation `deployment` was read
    at (one UPDATE, so two concurrent updates cannot both build on the same one)."""
    values["updated_at"] = datetime.now(UTC)
    async with database(request).transaction() as session:
        await enforce_quota(
            session, deployment.user_id, Claim.deployment_change(deployment.id, values)
        )
        result = await session.exec(
            update(Deployment)
            .where(col(Deployment.id) == deployment.id)
            .where(col(Deployment.generation) == deployment.generation)
            .values(**values)
        )
    if result.rowcount != 1:
        return False
    for name, value in values.items():
        setattr(deployment, name, value)
    wake_reconciler(request)
    return True


async def update_deployment(request: web.Request, body: UpdateDeployment) -> DeploymentChanged:
    """Change the deployment; container changes roll out one replica at a time."""
    await check_image_access(request, await owned_deployment(request), body)
    for attempt in range(UPDATE_ATTEMPTS):
        await asyncio.sleep(0.005 * attempt)
        deployment = await owned_deployment(request)
        values = {
            **_update_values(deployment, body),
            **image_values(request, body, deployment.id),
        }
        changed = [f for f in SPEC_FIELDS if f in values and values[f] != getattr(deployment, f)]
        if changed:
            values["generation"] = deployment.generation + 1
            values["status"] = "updating"
        if await _save_unless_changed_meanwhile(request, deployment, values):
            break
    else:
        raise Conflict("the deployment kept changing meanwhile; try again", code="update_conflict")
    return DeploymentChanged(
        id=deployment.id,
        status=deployment.status,
        replicas=deployment.replicas,
        message="Deployment update in progress" if changed else "Deployment updated",
        updated_at=deployment.updated_at,
    )


def _update_values(deployment: Deployment, body: UpdateDeployment) -> dict[str, Any]:
    values = _options(body)
    if body.move_after and values.get("on_node_loss", deployment.on_node_loss) != "wait":
        raise Unprocessable(
            "move_after goes with on_node_loss = wait", code="move_after_needs_wait"
        )
    ports = body.port_requests()
    if ports is not None:
        if len(ports) != len(deployment.ports):
            raise Unprocessable(
                "the number of ports cannot change; create a new deployment",
                code="ports_count_changed",
            )
        values["ports"] = [p.port for p in ports]
        protocols = [p.protocol for p in ports]
        stored = [protocol_at(deployment.port_protocols, i) for i in range(len(ports))]
        # A row from before protocols stores none: the same TCP ports are no change.
        values["port_protocols"] = deployment.port_protocols if protocols == stored else protocols
    if body.replicas is not None:
        values["replicas"] = body.replicas
    return values


async def scale_deployment(request: web.Request, body: ScaleDeployment) -> DeploymentChanged:
    """Set the number of replicas."""
    deployment = await owned_deployment(request)
    await save(request, deployment, {"replicas": body.replicas})
    return DeploymentChanged(
        id=deployment.id,
        status=deployment.status,
        replicas=deployment.replicas,
        message="Deployment scaled successfully",
    )


async def delete_deployment(request: web.Request, query: DeleteQuery) -> DeletedDeployment:
    """Remove the containers (and with `delete_data=true` their data), then the rows."""
    deployment = await owned_deployment(request)
    reconciler = request.app.get(RECONCILER)
    async with reconciler.paused() if reconciler else contextlib.nullcontext():
        if reconciler is not None:  # a restore after node loss holds its container
            await reconciler.restore.cancel_of(str(deployment.id))
        async with database(request).session() as session:
            replicas = (
                await session.exec(
                    select(Replica).where(col(Replica.deployment_id) == deployment.id)
                )
            ).all()
        removed = await asyncio.gather(*(_remove(request, r, query.delete_data) for r in replicas))
        async with database(request).transaction() as session:
            if query.delete_data:  # due now, on every node that holds a copy
                for replica in replicas:
                    await session.merge(ReleasedVolume.of(replica, deployment.user_id, utcnow()))
            await session.exec(delete(Deployment).where(col(Deployment.id) == deployment.id))
            await record_event(request, session, deployment_deleted(deployment))
    wake_reconciler(request)
    return DeletedDeployment(
        message="Deployment deleted successfully",
        deployment_id=deployment.id,
        app_name=deployment.app_name,
        namespace_deleted=True,
        # Only when every replica's agent said it removed the data.
        data_deleted=query.delete_data and all(removed),
    )


async def _remove(request: web.Request, replica: Replica, delete_data: bool) -> bool:
    """Whether the replica's agent removed it (and its data, when asked)."""
    # A node that is unreachable now keeps a stale copy; the reconciler removes it as
    # an orphan when the node reports again (keeping its data).
    pool = request.app.get(AGENT_POOL)
    if pool is None or replica.node_id is None:
        return False
    try:
        client = pool.client(str(replica.node_id))
        await client.remove_server(str(replica.id), delete_data=delete_data)
    except AgentError:
        return False
    pool.forget_server(str(replica.node_id), str(replica.id))
    return True
