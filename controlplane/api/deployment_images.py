"""The image half of creating and updating a deployment (the schema already
refused references that do not parse): the operators' allowlist is applied (403
`image_not_allowed`, naming the rule), the pull policy kept, and registry
credentials sealed before they are stored. Nothing here ever returns a password."""

from __future__ import annotations

import uuid
from typing import Any

from aiohttp import web

from common.image_reference import (
    ImageReference,
    InvalidReference,
    parse_image_reference,
    private_registry_refusal,
)
from controlplane.api.context import settings
from controlplane.api.deployment_schemas import (
    CreateDeployment,
    RegistryAuthView,
    UpdateDeployment,
)
from controlplane.api.errors import Forbidden, ValidationFailed
from controlplane.api.image_checks import ImageAccess, refuse_unavailable_image
from controlplane.db.tables import Deployment
from controlplane.security.secrets import SecretUnreadable
from controlplane.state import REGISTRY_SECRETS

# Changing these needs new containers (the node pulls again with them).
IMAGE_SPEC_FIELDS = (
    "pull_policy",
    "registry_username",
    "registry_password_sealed",
    "registry_server",
)


def allowed_by(reference: ImageReference, rule: str) -> bool:
    """A rule with a "/" (or ending in ":") is a prefix of the full name
    registry/repository ("docker.io/library/", "ghcr.io/team/app", "127.0.0.1:");
    any other names one registry host[:port] exactly ("docker.io", not
    "docker.io.example.com")."""
    if "/" in rule or rule.endswith(":"):
        return reference.name.startswith(rule) or f"{reference.name}/" == rule
    return reference.registry == rule


def checked_image(request: web.Request, image: str) -> ImageReference:
    """The parsed reference of `image`, or the API's refusal of it."""
    try:
        reference = parse_image_reference(image)
    except InvalidReference as exc:  # the schema checked it; kept for direct callers
        raise ValidationFailed(f"image: {exc}", details=[{"field": "body.image"}]) from None
    config = settings(request)
    allowlist = config.image_allowlist
    listed = any(allowed_by(reference, rule) for rule in allowlist)
    if allowlist and not listed:
        raise Forbidden(
            f"image {image!r} ({reference.name}) is not allowed here: the control plane's "
            f"image_allowlist admits only {', '.join(repr(r) for r in allowlist)}",
            code="image_not_allowed",
            details={"image": image, "name": reference.name, "allowlist": list(allowlist)},
        )
    private = private_registry_refusal(reference)
    if private is not None and not listed and not config.image_registries_allow_private:
        # The engine would connect where the tenant says: no probing of the nodes'
        # own services, private networks or cloud metadata through image checks.
        raise Forbidden(
            f"image {image!r} is not allowed here: {private}; images from private or "
            "local registries need the operator's image_allowlist to name them (or "
            "image_registries_allow_private)",
            code="image_not_allowed",
            details={"image": image, "name": reference.name, "allowlist": list(allowlist)},
        )
    return reference


def image_values(
    request: web.Request, body: CreateDeployment | UpdateDeployment, deployment_id: uuid.UUID
) -> dict[str, Any]:
    """Column values for the image fields `body` sets (credentials sealed for
    deployment `deployment_id`)."""
    values: dict[str, Any] = {}
    if body.image is not None:
        checked_image(request, body.image)
        values["image"] = body.image
    if body.pull_policy is not None:
        values["pull_policy"] = body.pull_policy
    if isinstance(body, UpdateDeployment) and body.remove_registry_auth:
        values.update(registry_username=None, registry_password_sealed=None, registry_server="")
    if body.registry_auth is not None:
        auth = body.registry_auth
        values["registry_username"] = auth.username
        values["registry_password_sealed"] = request.app[REGISTRY_SECRETS].seal(
            auth.password, deployment_id
        )
        values["registry_server"] = auth.server_address
    return values


def registry_auth_view(deployment: Deployment) -> RegistryAuthView | None:
    """The stored credentials as the API shows them (username only)."""
    if deployment.registry_username is None:
        return None
    return RegistryAuthView(
        username=deployment.registry_username, server_address=deployment.registry_server
    )


def image_access(
    request: web.Request, deployment: Deployment, body: CreateDeployment | UpdateDeployment
) -> ImageAccess:
    """The image and credentials `deployment` will pull with once `body` applies
    (the stored password is unsealed when `body` keeps it)."""
    image = body.image if body.image is not None else deployment.image
    if body.registry_auth is not None:
        auth = body.registry_auth
        return ImageAccess(image, auth.username, auth.password, auth.server_address)
    removed = isinstance(body, UpdateDeployment) and body.remove_registry_auth
    sealed = deployment.registry_password_sealed
    if removed or deployment.registry_username is None or sealed is None:
        return ImageAccess(image)
    try:
        password = request.app[REGISTRY_SECRETS].open(sealed, deployment.id)
    except SecretUnreadable:
        return ImageAccess(image)  # the pull reports it, as before
    return ImageAccess(image, deployment.registry_username, password, deployment.registry_server)


async def check_image_access(
    request: web.Request, deployment: Deployment, body: CreateDeployment | UpdateDeployment
) -> None:
    """Seed 004's 422 when `body` creates `deployment` or changes its image or
    credentials and a ready node says the image cannot be had
    (:mod:`controlplane.api.image_checks`). Nothing is asked for a deployment that
    will have no replicas or never pulls, or a change that leaves the image and
    credentials alone."""
    if isinstance(body, UpdateDeployment) and body.image is None and body.registry_auth is None:
        return
    replicas = body.replicas if body.replicas is not None else deployment.replicas
    policy = body.pull_policy if body.pull_policy is not None else deployment.pull_policy
    if replicas == 0 or policy == "never":
        return  # "never": no registry is asked; a node without the image says so later
    if body.image is not None:
        checked_image(request, body.image)  # 403 before any registry is asked
    await refuse_unavailable_image(request, image_access(request, deployment, body))
