"""Changes that could keep a thief in an account: revoking its credentials after a
password change or reset, and the mails that tell the owner about each change.

Revocation runs inside the caller's transaction; after it commits the caller must
call `Authenticator.forget_user` so that cached API keys and session checks fail on
the next request.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import update
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from controlplane.db.tables import ApiKey
from controlplane.mail import MailOutbox
from controlplane.sessions import revoke_sessions


@dataclass(frozen=True, slots=True)
class Revoked:
    """How many credentials a change ended."""

    sessions: int = 0
    api_keys: int = 0


async def revoke_credentials(
    session: AsyncSession,
    user_id: uuid.UUID,
    *,
    sessions: bool,
    api_keys: bool,
    keep_session: uuid.UUID | None = None,
) -> Revoked:
    """Revoke the account's sessions (all but `keep_session`) and/or every API key."""
    ended = await revoke_sessions(session, user_id=user_id, keep=keep_session) if sessions else 0
    keys = 0
    if api_keys:
        result = await session.exec(
            update(ApiKey)
            .where(col(ApiKey.user_id) == user_id, col(ApiKey.revoked_at).is_(None))
            .values(revoked_at=datetime.now(UTC))
        )
        keys = result.rowcount
    return Revoked(sessions=ended, api_keys=keys)


def _when(client_address: str) -> str:
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"on {now}, from the address {client_address}"


def _revoked_lines(revoked: Revoked, kept_current: bool) -> str:
    sessions = "other " if kept_current else ""
    return (
        f"Signed out: {revoked.sessions} {sessions}session(s).\n"
        f"Revoked: {revoked.api_keys} API key(s).\n"
    )


def mail_password_changed(
    outbox: MailOutbox,
    *,
    to: str,
    username: str,
    how: str,
    revoked: Revoked,
    client_address: str,
    kept_current: bool = False,
) -> None:
    """Tell the owner their password was `how` ("changed" or "reset")."""
    outbox.post(
        to,
        f"Your Encedeus password was {how}",
        f"Hello {username},\n\n"
        f"The password of your Encedeus account was {how} {_when(client_address)}.\n"
        f"{_revoked_lines(revoked, kept_current)}\n"
        "If this was not you, reset your password now (forgot password) and revoke\n"
        "your API keys, or ask an administrator for help.\n",
    )


def mail_email_changed(
    outbox: MailOutbox, *, old: str, new: str, username: str, client_address: str
) -> None:
    """Tell both the old and the new address that the account's e-mail changed."""
    when = _when(client_address)
    outbox.post(
        old,
        "Your Encedeus e-mail address was changed",
        f"Hello {username},\n\n"
        f"The e-mail address of your Encedeus account was changed from {old} to {new}\n"
        f"{when}. Password resets now go to the new address.\n\n"
        "If this was not you, ask an administrator to restore your address: someone\n"
        "who knows your password has control of your account.\n",
    )
    outbox.post(
        new,
        "This is now your Encedeus e-mail address",
        f"Hello {username},\n\n"
        f"This address is now the e-mail address of the Encedeus account {username}\n"
        f"(it was {old}), changed {when}.\n",
    )
