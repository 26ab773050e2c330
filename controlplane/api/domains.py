"""/v1/deployments/{id}/domains: custom domains of a deployment, and the ingress's
`ask` endpoint (docs/ingress.md, docs/api.md).

A domain is added `pending_verification` with a token; `verify` looks for the token
in a DNS TXT record `_encedeus.<domain>` or over HTTP at
`/.well-known/encedeus/<token>`; once verified the ingress routes it. A name another
account has verified is 409; deleting a domain removes its route at once.
"""

from __future__ import annotations

import secrets
from datetime import datetime

from aiohttp import web
from pydantic import BaseModel, Field
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from common.outbound import OutboundPolicy
from controlplane.api.context import database, settings
from controlplane.api.deployments import owned_deployment
from controlplane.api.errors import Conflict, NotFound, Unprocessable, ValidationFailed
from controlplane.api.schemas import MessageResponse, Request
from controlplane.db.tables import CustomDomain, Deployment
from controlplane.db.types import utcnow
from controlplane.ingress.domain_names import InvalidDomain, normalise_domain
from controlplane.ingress.verify import CHALLENGE_PATH, txt_name, verify_domain
from controlplane.state import INGRESS

VERIFIED = "verified"
PENDING = "pending_verification"


class AddDomain(Request):
    domain: str = Field(min_length=1, max_length=300)


class Verification(BaseModel):
    """How to prove control: either of the two."""

    token: str
    txt_name: str
    txt_value: str
    http_path: str


class DomainInfo(BaseModel):
    domain: str
    state: str
    verification: Verification
    last_error: str | None
    created_at: datetime
    verified_at: datetime | None


class DomainList(BaseModel):
    domains: list[DomainInfo]


class AskQuery(BaseModel):
    domain: str = Field(min_length=1, max_length=300)


def _info(row: CustomDomain) -> DomainInfo:
    return DomainInfo(
        domain=row.domain,
        state=row.state,
        verification=Verification(
            token=row.token,
            txt_name=txt_name(row.domain),
            txt_value=row.token,
            http_path=CHALLENGE_PATH + row.token,
        ),
        last_error=row.last_error,
        created_at=row.created_at,
        verified_at=row.verified_at,
    )


def _changed(request: web.Request) -> None:
    publisher = request.app.get(INGRESS)
    if publisher is not None:
        publisher.changed()


def _name(request: web.Request, raw: str) -> str:
    try:
        return normalise_domain(raw, settings(request).domain_suffix)
    except InvalidDomain as exc:
        raise ValidationFailed(str(exc), code="invalid_domain") from None


async def _verified_elsewhere(request: web.Request, domain: str, deployment_id: object) -> bool:
    async with database(request).session() as session:
        found = await session.exec(
            select(CustomDomain.id).where(
                col(CustomDomain.domain) == domain,
                col(CustomDomain.state) == VERIFIED,
                col(CustomDomain.deployment_id) != deployment_id,
            )
        )
        return found.first() is not None


async def add_domain(request: web.Request, body: AddDomain) -> DomainInfo:
    """Claim a domain for the deployment; it stays pending until verified."""
    deployment = await owned_deployment(request)
    domain = _name(request, body.domain)
    if await _verified_elsewhere(request, domain, deployment.id):
        raise Conflict("this domain is in use by another deployment", code="domain_taken")
    row = CustomDomain(
        deployment_id=deployment.id,
        user_id=deployment.user_id,
        domain=domain,
        token=secrets.token_hex(16),
    )
    async with database(request).transaction() as session:
        existing = await session.exec(
            select(CustomDomain.id).where(
                col(CustomDomain.deployment_id) == deployment.id,
                col(CustomDomain.domain) == domain,
            )
        )
        if existing.first() is not None:
            raise Conflict("this deployment has this domain already", code="domain_exists")
        session.add(row)
    _changed(request)  # its HTTP token is served from now on
    return _info(row)


async def list_domains(request: web.Request) -> DomainList:
    """The deployment's domains with their state."""
    deployment = await owned_deployment(request)
    async with database(request).session() as session:
        rows = await session.exec(
            select(CustomDomain)
            .where(col(CustomDomain.deployment_id) == deployment.id)
            .order_by(col(CustomDomain.created_at))
        )
        return DomainList(domains=[_info(row) for row in rows.all()])


async def _own_domain(request: web.Request) -> CustomDomain:
    deployment = await owned_deployment(request)
    domain = _name(request, request.match_info["domain"])
    async with database(request).session() as session:
        found = await session.exec(
            select(CustomDomain).where(
                col(CustomDomain.deployment_id) == deployment.id,
                col(CustomDomain.domain) == domain,
            )
        )
        row = found.first()
    if row is None:
        raise NotFound("this deployment has no such domain", code="domain_not_found")
    return row


def _check_policy(request: web.Request) -> OutboundPolicy:
    config = settings(request)
    return OutboundPolicy(
        allow_private=config.domain_check_allow_private,
        allowed_networks=config.outbound_allowed_networks,
        max_bytes=4096,
        timeout_seconds=10.0,
    )


async def verify_domain_claim(request: web.Request) -> DomainInfo:
    """Look for the token (DNS TXT, then HTTP); 422 with both reasons when absent."""
    row = await _own_domain(request)
    if row.state == VERIFIED:
        return _info(row)
    if await _verified_elsewhere(request, row.domain, row.deployment_id):
        raise Conflict("this domain is in use by another deployment", code="domain_taken")
    verdict = await verify_domain(
        row.domain,
        row.token,
        nameservers=settings(request).domain_nameservers,
        policy=_check_policy(request),
    )
    try:
        async with database(request).transaction() as session:
            fresh = await session.get(CustomDomain, row.id)
            if fresh is None:
                raise NotFound("this deployment has no such domain", code="domain_not_found")
            if verdict.verified:
                fresh.state, fresh.verified_at, fresh.last_error = VERIFIED, utcnow(), None
            else:
                reasons = (f"{kind}: {why}" for kind, why in verdict.reasons)
                fresh.last_error = "; ".join(reasons)[:1000]
            session.add(fresh)
            row = fresh
    except IntegrityError:
        # Another deployment's verification of this name committed first (the
        # partial unique index on verified domains).
        raise Conflict("this domain is in use by another deployment", code="domain_taken") from None
    if not verdict.verified:
        raise Unprocessable(
            "the verification token was not found",
            code="domain_not_verified",
            details=dict(verdict.reasons),
        )
    _changed(request)
    return _info(row)


async def delete_domain(request: web.Request) -> MessageResponse:
    """Remove the domain; the ingress stops routing it at once."""
    row = await _own_domain(request)
    async with database(request).transaction() as session:
        fresh = await session.get(CustomDomain, row.id)
        if fresh is not None:
            await session.delete(fresh)
    _changed(request)
    return MessageResponse(message="domain removed")


async def ask(request: web.Request, query: AskQuery) -> MessageResponse:
    """For on-demand TLS: 200 only for a verified custom domain or an app's own name."""
    name = query.domain.strip().rstrip(".").lower()
    async with database(request).session() as session:
        verified = await session.exec(
            select(CustomDomain.id).where(
                col(CustomDomain.domain) == name, col(CustomDomain.state) == VERIFIED
            )
        )
        if verified.first() is not None:
            return MessageResponse(message="ok")
        suffix = settings(request).domain_suffix
        app = name.removesuffix("." + suffix) if suffix else ""
        if app and app != name and "." not in app:
            apps = await session.exec(
                select(Deployment.id).where(col(Deployment.app_name) == app).limit(1)
            )
            if apps.first() is not None:
                return MessageResponse(message="ok")
    raise NotFound("no certificate for this name", code="unknown_domain")
