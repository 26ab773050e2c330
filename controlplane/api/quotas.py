"""/v1/users/{id}/quota (an admin sets it; the admin or the account reads it) and
/v1/user/quota (the caller's own): limits and what the account uses against them."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from aiohttp import web
from pydantic import BaseModel
from sqlmodel import col, select

from controlplane.api.context import current_user, database
from controlplane.api.errors import Forbidden, NotFound
from controlplane.db.tables import AccountQuota, User
from controlplane.quota_enforcement import read_limits, read_usage
from controlplane.quotas import QuotaLimits

ME = "@me"


class QuotaUsage(BaseModel):
    """What the account reserves now (see docs/api.md for how it is counted)."""

    deployments: int
    replicas: int
    cpu_millis: int
    memory_bytes: int
    disk_bytes: int


class AccountQuotaView(BaseModel):
    """An account's limits (null = unlimited) and its usage."""

    user_id: uuid.UUID
    limits: QuotaLimits
    usage: QuotaUsage


def _account_id(request: web.Request) -> uuid.UUID:
    """The account named by the path: `@me`, the caller's own id, or any for an admin."""
    caller = current_user(request)
    raw = request.match_info["id"]
    if raw == ME:
        return caller.id
    try:
        account_id = uuid.UUID(raw)
    except ValueError:
        raise NotFound("no such user", code="user_not_found") from None
    if account_id != caller.id and not caller.is_admin:
        raise Forbidden("administrators only", code="admin_required")
    return account_id


async def _view(request: web.Request, account_id: uuid.UUID) -> AccountQuotaView:
    async with database(request).session() as session:
        if await session.get(User, account_id) is None:
            raise NotFound("no such user", code="user_not_found")
        limits = await read_limits(session, account_id)
        usage = await read_usage(session, account_id)
    return AccountQuotaView(user_id=account_id, limits=limits, usage=QuotaUsage(**usage.as_dict()))


async def get_own_quota(request: web.Request) -> AccountQuotaView:
    """The caller's limits and usage."""
    return await _view(request, current_user(request).id)


async def get_quota(request: web.Request) -> AccountQuotaView:
    """An account's limits and usage (admins, or the account itself)."""
    return await _view(request, _account_id(request))


async def set_quota(request: web.Request, body: QuotaLimits) -> AccountQuotaView:
    """Replace an account's limits (admins only); an omitted or null limit is unlimited.
    Lowering a limit below what the account uses stops nothing: it only refuses changes
    that would use more."""
    account_id = _account_id(request)
    async with database(request).transaction() as session:
        if await session.get(User, account_id) is None:
            raise NotFound("no such user", code="user_not_found")
        row = (
            await session.exec(select(AccountQuota).where(col(AccountQuota.user_id) == account_id))
        ).first() or AccountQuota(user_id=account_id)
        for name, value in body.model_dump().items():
            setattr(row, name, value)
        row.updated_at = datetime.now(UTC)
        session.add(row)
    return await _view(request, account_id)
