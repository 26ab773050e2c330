"""Account operations shared by the REST API and the `encedeus user` command."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy import func, or_
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from controlplane.api.errors import Conflict
from controlplane.db.engine import Database
from controlplane.db.tables import User
from controlplane.quota_enforcement import quota_row
from controlplane.quotas import QuotaLimits
from controlplane.security.passwords import hash_password, verify_password


async def _taken(session: AsyncSession, username: str, email: str) -> None:
    statement = select(User.username, User.email).where(
        or_(col(User.username) == username, col(User.email) == email)
    )
    for taken_username, taken_email in (await session.exec(statement)).all():
        if taken_username == username:
            raise Conflict("that username is taken", code="username_taken")
        if taken_email == email:
            raise Conflict("an account with that e-mail exists", code="email_taken")


async def create_user(
    db: Database,
    *,
    username: str,
    email: str,
    password: str,
    quota: QuotaLimits,
    admin: bool | None = None,
) -> User:
    """Create an account from already validated fields, with `quota` (normally the
    configured `default_quota`; admins get it too).

    `admin=None` applies the first-account rule: the first account is an admin.
    Raises Conflict (`username_taken` / `email_taken`).
    """
    password_hash = await hash_password(password)
    try:
        async with db.transaction() as session:
            if db.dialect == "postgresql":
                # Two first registrations at once must not both become admin.
                await (await session.connection()).exec_driver_sql(
                    "LOCK TABLE users IN SHARE ROW EXCLUSIVE MODE"
                )
            await _taken(session, username, email)
            user = User(
                username=username, email=email, password_hash=password_hash, is_admin=bool(admin)
            )
            session.add(user)
            await session.flush()
            session.add(quota_row(user.id, quota))
            if admin is None:
                # Decided after the insert, inside the write transaction: on SQLite
                # writers are serialised from the INSERT on, so of two racing first
                # registrations only one sees itself alone.
                count = (await session.exec(select(func.count()).select_from(User))).one()
                user.is_admin = count == 1
                session.add(user)
    except IntegrityError as exc:
        raise Conflict("username or e-mail already in use", code="account_exists") from exc
    return user


async def find_login(
    session: AsyncSession, *, email: str | None, username: str | None
) -> User | None:
    """The account named by e-mail (case-insensitive) or username, if any."""
    if email:
        statement = select(User).where(col(User.email) == email.lower())
    elif username:
        statement = select(User).where(col(User.username) == username)
    else:
        return None
    return (await session.exec(statement)).first()


async def check_password(db: Database, *, login: str, password: str) -> User | None:
    """The active account whose username or e-mail is `login` and password matches.

    Costs one argon2 verification whether or not the account exists.
    """
    async with db.session() as session:
        if "@" in login:
            user = await find_login(session, email=login, username=None)
        else:
            user = await find_login(session, email=None, username=login)
    if not await verify_password(user.password_hash if user else None, password):
        return None
    return user if user is not None and user.is_active else None


async def set_password(session: AsyncSession, user_id: uuid.UUID, password: str) -> User:
    """Store a new password hash for `user_id` (inside the caller's transaction); the
    account's row."""
    user = await session.get(User, user_id)
    if user is None:
        raise LookupError(str(user_id))
    user.password_hash = await hash_password(password)
    user.updated_at = datetime.now(UTC)
    session.add(user)
    return user
