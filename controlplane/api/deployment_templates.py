"""Deployments made from templates: create-time resolution and
`PUT /v1/deployments/{id}/variables`.

The resolved template is stored on the deployment (controlplane/templates/resolve.py),
so editing the template changes no running server until its owner re-resolves it here.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from common.quantities import parse_disk_bytes, parse_memory_bytes
from controlplane.api.deployment_schemas import (
    CreateDeployment,
    DeploymentChanged,
    TemplateVariables,
)
from controlplane.api.errors import Conflict, NotFound, Unprocessable
from controlplane.api.templates import find_template
from controlplane.db.tables import Deployment
from controlplane.templates.model import Template
from controlplane.templates.resolve import Resolution, VariablesInvalid, resolve_template

DEFAULT_MEMORY = "128Mi"


def _resolve(
    template: Template,
    variables: dict[str, str],
    image_label: str | None,
    memory_bytes: int,
    previous: dict[str, str] | None = None,
) -> Resolution:
    try:
        return resolve_template(template, variables, image_label=image_label,
                                memory_bytes=memory_bytes, previous=previous)  # fmt: skip
    except VariablesInvalid as exc:
        raise Unprocessable(str(exc), code="invalid_variables", details=exc.problems) from None
    except KeyError:
        labels = ", ".join(template.images)
        raise Unprocessable(
            f"template {template.id} has no image {image_label!r} (it has {labels})",
            code="unknown_image_label",
        ) from None


def resolution_values(
    resolution: Resolution, extra_env: dict[str, str] | None, *, take_disk: bool
) -> dict[str, Any]:
    """The deployment columns a resolution sets; `extra_env` (the request's own
    env_vars) is laid over the template's environment. `take_disk`: the template's
    disk size default becomes the deployment's disk (a create whose request gives
    none; never an update, which would resize existing volumes)."""
    values: dict[str, Any] = {
        "image": resolution.image,
        "command": resolution.command,
        "env_vars": {**resolution.env, **(extra_env or {})},
        "ports": resolution.ports,
        "port_protocols": resolution.port_protocols,
        "stop_command": resolution.stop_command,
        "stop_signal": resolution.stop_signal,
        "stop_timeout": resolution.stop_timeout,
        "template_id": resolution.record["id"],
        "template": resolution.record,
    }
    if resolution.restart_policy is not None:
        values["restart_policy"] = resolution.restart_policy
    if take_disk and resolution.disk:
        values["disk"] = resolution.disk
        values["disk_bytes"] = parse_disk_bytes(resolution.disk)
    return values


async def template_values(request: web.Request, body: CreateDeployment) -> dict[str, Any]:
    """Resolve the request's template: the deployment columns to set, including the
    ports (which the request's own `ports` may not add to) and, unless the request
    gives `resources.disk`, the template's disk size default."""
    assert body.template is not None
    try:
        template, _, _ = await find_template(request, body.template)
    except NotFound as exc:  # a field of the body names it: the body is unusable
        raise Unprocessable(exc.message, code="template_not_found") from None
    memory = parse_memory_bytes(body.resources.memory if body.resources else DEFAULT_MEMORY)
    resolution = _resolve(template, dict(body.variables or {}), body.image_label, memory)
    if body.all_ports():
        raise Unprocessable("a template names its own ports", code="template_ports")
    disk_given = bool(body.resources and body.resources.disk)
    return resolution_values(resolution, body.env_vars, take_disk=not disk_given)


async def update_variables(request: web.Request, body: TemplateVariables) -> DeploymentChanged:
    """Re-resolve the deployment against its template's current version with the new
    values, and roll it out one replica at a time."""
    # deployments.py imports this module for create: import it here, at call time.
    from controlplane.api.deployment_images import checked_image
    from controlplane.api.deployments import owned_deployment, save

    deployment = await owned_deployment(request)
    if not deployment.template_id or not deployment.template:
        raise Conflict("the deployment was not made from a template", code="not_from_template")
    template, _, _ = await find_template(request, deployment.template_id)
    record: dict[str, Any] = deployment.template
    label = body.image_label or record.get("image_label")
    resolution = _resolve(template, dict(body.variables), label, deployment.memory_bytes,
                          previous=dict(record.get("variables") or {}))  # fmt: skip
    if len(resolution.ports) != len(deployment.ports):
        raise Unprocessable("the template's number of ports changed; create a new deployment",
                            code="ports_count_changed")  # fmt: skip
    values = resolution_values(resolution, _own_env(deployment), take_disk=False)
    checked_image(request, str(values.get("image", deployment.image)))
    values["generation"] = deployment.generation + 1
    values["status"] = "updating"
    await save(request, deployment, values)
    return DeploymentChanged(
        id=deployment.id,
        status=deployment.status,
        replicas=deployment.replicas,
        message=f"Deployment update to template {template.id} version {template.version} "
        "in progress",
        updated_at=deployment.updated_at,
    )


def _own_env(deployment: Deployment) -> dict[str, str]:
    """The env_vars the owner added beside the template's (kept on re-resolve)."""
    record = deployment.template or {}
    template_env = set(record.get("variables") or {}) | {
        "SERVER_IP", "SERVER_MEMORY", "SERVER_PORT", "STARTUP",
    }  # fmt: skip
    return {k: v for k, v in deployment.env_vars.items() if k not in template_env}


async def reinstall_deployment(request: web.Request) -> DeploymentChanged:
    """Run the template's install script again on every placed replica (each is
    stopped first); the reconciler then starts them again. Waits for the installs."""
    from controlplane.api.deployment_actions import on_each_replica
    from controlplane.api.deployments import owned_deployment

    deployment = await owned_deployment(request)
    if not (deployment.template or {}).get("install"):
        raise Conflict("the deployment has no install script", code="no_install_script")
    done = await on_each_replica(request, deployment, lambda c, sid: c.reinstall_server(sid))
    if done == 0:
        raise Conflict(
            "no replica was reinstalled (none placed, or the install failed: see the "
            "replicas' install_state)",
            code="reinstall_failed",
        )
    return DeploymentChanged(
        id=deployment.id,
        status=deployment.status,
        replicas=deployment.replicas,
        message=f"Reinstalled {done} replica(s)",
    )
