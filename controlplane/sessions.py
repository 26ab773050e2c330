"""Login sessions: access tokens, rotating refresh tokens, reuse detection, revocation.

A session is one login. Each refresh spends its refresh token and hands out a new
one; presenting a spent token again means it leaked, so the whole session (every
token in its family) is revoked.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from controlplane.api.errors import Unauthorized
from controlplane.config import ControlPlaneConfig
from controlplane.db.engine import Database
from controlplane.db.tables import AuthSession, RefreshToken, User
from controlplane.security.access_tokens import issue_access_token
from controlplane.security.credentials import ServerKeys, new_opaque_token


@dataclass(frozen=True, slots=True)
class TokenGrant:
    """What a login or refresh hands to the client."""

    access_token: str
    refresh_token: str
    expires_at: datetime
    session_id: uuid.UUID
    user: User


class SessionIssuer:
    """Opens, refreshes and ends sessions with the server's keys and lifetimes."""

    def __init__(
        self,
        db: Database,
        keys: ServerKeys,
        config: ControlPlaneConfig,
        forget_session: Callable[[uuid.UUID], None],
    ) -> None:
        self._db = db
        self._keys = keys
        self._forget_session = forget_session  # the cached checks of its access tokens
        self._access_ttl = timedelta(seconds=config.access_token_ttl_seconds)
        self._refresh_ttl = timedelta(days=config.refresh_token_ttl_days)

    def _grant(self, session: AsyncSession, user: User, session_id: uuid.UUID) -> TokenGrant:
        refresh = new_opaque_token()
        session.add(
            RefreshToken(session_id=session_id, token_hash=self._keys.credential_hash(refresh))
        )
        access, expires = issue_access_token(
            self._keys.jwt_key, user_id=user.id, session_id=session_id, ttl=self._access_ttl
        )
        return TokenGrant(access, refresh, expires, session_id, user)

    async def open(self, user: User, *, user_agent: str, client_address: str) -> TokenGrant:
        """Start a session for `user` (who has just proved who they are)."""
        now = datetime.now(UTC)
        async with self._db.transaction() as session:
            login = AuthSession(
                user_id=user.id,
                expires_at=now + self._refresh_ttl,
                user_agent=user_agent[:255],
                client_address=client_address[:64],
            )
            session.add(login)
            await session.exec(update(User).where(col(User.id) == user.id).values(last_login=now))
            await session.flush()
            return self._grant(session, user, login.id)

    async def refresh(self, refresh_token: str) -> TokenGrant:
        """Spend `refresh_token` for a new grant; a reused token revokes its session."""
        digest = self._keys.credential_hash(refresh_token)
        now = datetime.now(UTC)
        async with self._db.transaction() as session:
            statement = (
                select(RefreshToken, AuthSession, User)
                .join(AuthSession, col(AuthSession.id) == col(RefreshToken.session_id))
                .join(User, col(User.id) == col(AuthSession.user_id))
                .where(col(RefreshToken.token_hash) == digest)
            )
            row = (await session.exec(statement)).first()
            if row is None:
                raise Unauthorized("invalid refresh token", code="invalid_refresh_token")
            token, login, user = row
            if login.revoked_at is not None or login.expires_at <= now or not user.is_active:
                raise Unauthorized("session ended", code="invalid_refresh_token")
            spent = await session.exec(
                update(RefreshToken)
                .where(col(RefreshToken.id) == token.id, col(RefreshToken.spent_at).is_(None))
                .values(spent_at=now)
            )
            if spent.rowcount != 1:
                reused = True
            else:
                reused = False
                login.expires_at = now + self._refresh_ttl
                session.add(login)
                grant = self._grant(session, user, login.id)
        if reused:
            await self.revoke(login.id)
            raise Unauthorized(
                "refresh token already used; the session was revoked",
                code="refresh_token_reused",
            )
        return grant

    async def revoke(self, session_id: uuid.UUID) -> None:
        """End one session (idempotent)."""
        async with self._db.transaction() as session:
            await revoke_sessions(session, session_ids=[session_id])
        self._forget_session(session_id)


async def revoke_sessions(
    session: AsyncSession,
    *,
    session_ids: list[uuid.UUID] | None = None,
    user_id: uuid.UUID | None = None,
    keep: uuid.UUID | None = None,
) -> int:
    """Revoke the given sessions, or every session of `user_id` except `keep`; how many
    were still open."""
    statement = update(AuthSession).where(col(AuthSession.revoked_at).is_(None))
    if session_ids is not None:
        statement = statement.where(col(AuthSession.id).in_(session_ids))
    if user_id is not None:
        statement = statement.where(col(AuthSession.user_id) == user_id)
    if keep is not None:
        statement = statement.where(col(AuthSession.id) != keep)
    result = await session.exec(statement.values(revoked_at=datetime.now(UTC)))
    return result.rowcount
