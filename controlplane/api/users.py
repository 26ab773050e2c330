"""/v1/users: the admin's view of every account, and the admin's changes to one."""

from __future__ import annotations

from datetime import UTC, datetime

from aiohttp import web
from pydantic import BaseModel, StrictBool
from sqlmodel import col, select

from controlplane.account_changes import revoke_credentials
from controlplane.api.context import authenticator, current_user, database, path_uuid
from controlplane.api.errors import Conflict, NotFound
from controlplane.api.pagination import PageQuery, Pagination, fetch_page
from controlplane.api.profile import profile_of
from controlplane.api.schemas import Profile, Request
from controlplane.db.tables import User


class UserList(BaseModel):
    """A page of accounts."""

    users: list[Profile]
    pagination: Pagination


async def list_users(request: web.Request, query: PageQuery) -> UserList:
    """Every account, oldest first (admins only)."""
    statement = select(User).order_by(col(User.created_at), col(User.id))
    async with database(request).session() as session:
        users, pagination = await fetch_page(session, statement, query)
    return UserList(users=[profile_of(user) for user in users], pagination=pagination)


async def get_user(request: web.Request) -> Profile:
    """One account by id (admins only)."""
    async with database(request).session() as session:
        user = await session.get(User, path_uuid(request))
    if user is None:
        raise NotFound("no such user", code="user_not_found")
    return profile_of(user)


class AccountChange(Request):
    """An admin's change to an account; an omitted field is left as it is."""

    is_admin: StrictBool | None = None
    is_active: StrictBool | None = None


async def change_user(request: web.Request, body: AccountChange) -> Profile:
    """Make an account an admin or not, disable or enable it (admins only).

    Disabling ends every session of the account at once (re-enabling does not bring
    them back: the owner signs in again) and its API keys stop working on the next
    request while it stays disabled. An admin cannot demote or disable their own
    account (409 `cannot_change_self`), so an installation always keeps the admin
    who is making changes.
    """
    account_id = path_uuid(request)
    caller = current_user(request)
    if account_id == caller.id and (body.is_admin is False or body.is_active is False):
        raise Conflict(
            "you cannot remove your own admin rights or disable your own account",
            code="cannot_change_self",
        )
    async with database(request).transaction() as session:
        user = await session.get(User, account_id)
        if user is None:
            raise NotFound("no such user", code="user_not_found")
        if body.is_admin is not None:
            user.is_admin = body.is_admin
        if body.is_active is not None:
            user.is_active = body.is_active
        if body.is_active is False:
            await revoke_credentials(session, account_id, sessions=True, api_keys=False)
        user.updated_at = datetime.now(UTC)
        session.add(user)
        await session.flush()
    authenticator(request).forget_user(account_id)
    return profile_of(user)
