"""/v1/users: the admin's view of every account."""

from __future__ import annotations

from aiohttp import web
from pydantic import BaseModel
from sqlmodel import col, select

from controlplane.api.context import database, path_uuid
from controlplane.api.errors import NotFound
from controlplane.api.pagination import PageQuery, Pagination, fetch_page
from controlplane.api.profile import profile_of
from controlplane.api.schemas import Profile
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
