"""/v1/api-keys: long-lived credentials for scripts and the CLI."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from aiohttp import web
from pydantic import BaseModel, Field
from sqlalchemy import update
from sqlmodel import col, select

from controlplane.api.context import authenticator, current_user, database, path_uuid, server_keys
from controlplane.api.errors import NotFound
from controlplane.api.pagination import PageQuery, Pagination, fetch_page
from controlplane.api.schemas import MessageResponse, Request
from controlplane.db.tables import ApiKey
from controlplane.security.credentials import new_api_key, visible_prefix


class CreateApiKey(Request):
    """A name to recognise the key by, and optionally a lifetime."""

    name: str = Field(min_length=1, max_length=100)
    description: str = Field(default="", max_length=500)
    expires_in_days: int | None = Field(default=None, ge=1, le=3650)


class ApiKeyInfo(BaseModel):
    """A key as listed: never the secret, only its visible prefix."""

    id: uuid.UUID
    name: str
    description: str
    key_prefix: str
    created_at: datetime
    expires_at: datetime | None
    last_used: datetime | None


class CreatedApiKey(ApiKeyInfo):
    """The new key; `key` is shown this once and cannot be recovered."""

    key: str


class ApiKeyList(BaseModel):
    """A page of the caller's keys."""

    api_keys: list[ApiKeyInfo]
    pagination: Pagination


async def create_api_key(request: web.Request, body: CreateApiKey) -> CreatedApiKey:
    """Create a key for the caller; the response is the only time the secret is shown."""
    secret = new_api_key()
    expires = (
        datetime.now(UTC) + timedelta(days=body.expires_in_days) if body.expires_in_days else None
    )
    key = ApiKey(
        user_id=current_user(request).id,
        name=body.name,
        description=body.description,
        key_prefix=visible_prefix(secret),
        key_hash=server_keys(request).credential_hash(secret),
        expires_at=expires,
    )
    async with database(request).transaction() as session:
        session.add(key)
    return CreatedApiKey(
        **ApiKeyInfo.model_validate(key, from_attributes=True).model_dump(), key=secret
    )


async def list_api_keys(request: web.Request, query: PageQuery) -> ApiKeyList:
    """The caller's keys that are not revoked, newest first."""
    statement = (
        select(ApiKey)
        .where(col(ApiKey.user_id) == current_user(request).id, col(ApiKey.revoked_at).is_(None))
        .order_by(col(ApiKey.created_at).desc(), col(ApiKey.id))
    )
    async with database(request).session() as session:
        keys, pagination = await fetch_page(session, statement, query)
    items = [ApiKeyInfo.model_validate(key, from_attributes=True) for key in keys]
    return ApiKeyList(api_keys=items, pagination=pagination)


async def revoke_api_key(request: web.Request) -> MessageResponse:
    """Revoke one of the caller's keys; it stops working on the next request."""
    key_id = path_uuid(request)
    async with database(request).transaction() as session:
        revoked = await session.exec(
            update(ApiKey)
            .where(col(ApiKey.id) == key_id, col(ApiKey.user_id) == current_user(request).id)
            .where(col(ApiKey.revoked_at).is_(None))
            .values(revoked_at=datetime.now(UTC))
        )
        if revoked.rowcount != 1:
            raise NotFound("no such API key", code="api_key_not_found")
    authenticator(request).forget_api_key(key_id)
    return MessageResponse(message="API key revoked successfully")
