"""/v1/user/profile, /v1/user/password and the /v1/users/@me alias."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from aiohttp import web
from pydantic import Field, model_validator
from sqlalchemy.exc import IntegrityError

from controlplane.account_changes import (
    Revoked,
    mail_email_changed,
    mail_password_changed,
    revoke_credentials,
)
from controlplane.accounts import check_password, set_password
from controlplane.api.authentication import CurrentUser
from controlplane.api.context import authenticator, current_user, database, mail_outbox
from controlplane.api.endpoints import client_address
from controlplane.api.errors import ApiError, Conflict, NotFound, rate_limited
from controlplane.api.schemas import Email, MessageResponse, Password, Profile, Request, Username
from controlplane.db.tables import User
from controlplane.state import RATE_LIMITER


class ProfileUpdate(Request):
    """Fields to change; omitted ones stay. A new e-mail address needs the current
    password: whoever holds only a stolen token must not be able to redirect the
    password-reset mails."""

    username: Username | None = None
    email: Email | None = None
    current_password: str | None = Field(default=None, max_length=256)


class PasswordChange(Request):
    """The current password proves it is the owner; the new one replaces it.

    By default every other session of the account ends and the API keys stay;
    `revoke_sessions=false` keeps the other sessions, `revoke_api_keys=true` revokes
    every API key as well (the one making the request included).
    """

    current_password: str = Field(min_length=1, max_length=256)
    new_password: Password
    confirm_new_password: str | None = Field(default=None, max_length=256)
    revoke_sessions: bool = True
    revoke_api_keys: bool = False

    @model_validator(mode="after")
    def _passwords_match(self) -> PasswordChange:
        if self.confirm_new_password is not None and self.confirm_new_password != self.new_password:
            raise ValueError("confirm_new_password does not match new_password")
        return self


class CredentialsChanged(MessageResponse):
    """A password change or reset, and what it revoked."""

    revoked_sessions: int
    revoked_api_keys: int


def profile_of(user: User | CurrentUser) -> Profile:
    """The profile view of a user row (or of the caller's snapshot)."""
    # Field by field: a CurrentUser is a Profile, but its credential ids are no part
    # of the answer.
    return Profile.model_validate({name: getattr(user, name) for name in Profile.model_fields})


async def get_profile(request: web.Request) -> Profile:
    """The caller's own account."""
    # The snapshot taken by authentication is current (every account write
    # invalidates it) and saves the hot path a database round trip; its profile is
    # built and rendered once per snapshot.
    return current_user(request).profile


async def _require_password(request: web.Request, password: str | None) -> None:
    """400 `password_required` / `wrong_password` unless `password` is the caller's."""
    caller = current_user(request)
    if not password:
        raise ApiError(
            "changing the e-mail address needs current_password", code="password_required"
        )
    # Counted per account before the check (as logins are): whoever holds a stolen
    # token must not be able to guess the password here at full speed.
    wait = request.app[RATE_LIMITER].hit(f"current-password {caller.id}")
    if wait is not None:
        raise rate_limited(wait)
    if await check_password(database(request), login=caller.username, password=password) is None:
        raise ApiError("the current password is wrong", code="wrong_password")


async def update_profile(request: web.Request, body: ProfileUpdate) -> Profile:
    """Change the caller's username and/or e-mail (the e-mail needs current_password;
    both the old and the new address are told)."""
    caller = current_user(request)
    new_email = body.email if body.email is not None and body.email != caller.email else None
    if new_email is not None:
        await _require_password(request, body.current_password)
    try:
        async with database(request).transaction() as session:
            user = await session.get(User, caller.id)
            if user is None:
                raise NotFound("account not found")
            old_email = user.email
            if body.username is not None:
                user.username = body.username
            if new_email is not None:
                user.email = new_email
            user.updated_at = datetime.now(UTC)
            session.add(user)
            await session.flush()
    except IntegrityError as exc:
        raise Conflict("that username or e-mail is already in use", code="account_exists") from exc
    authenticator(request).forget_user(caller.id)
    if new_email is not None and new_email != old_email:
        mail_email_changed(
            mail_outbox(request),
            old=old_email,
            new=new_email,
            username=user.username,
            client_address=client_address(request),
        )
    return profile_of(user)


async def change_password(request: web.Request, body: PasswordChange) -> CredentialsChanged:
    """Change the password; by default every other session ends (see PasswordChange).
    The owner is e-mailed."""
    caller = current_user(request)
    await _require_password(request, body.current_password)
    async with database(request).transaction() as session:
        user = await set_password(session, caller.id, body.new_password)
        revoked = await revoke_credentials(
            session,
            caller.id,
            sessions=body.revoke_sessions,
            api_keys=body.revoke_api_keys,
            keep_session=caller.session_id,
        )
    return password_set(
        request,
        user,
        revoked,
        how="changed",
        message="Password updated successfully",
        kept_current=caller.session_id,
    )


def password_set(
    request: web.Request,
    user: User,
    revoked: Revoked,
    *,
    how: str,
    message: str,
    kept_current: uuid.UUID | None = None,
) -> CredentialsChanged:
    """After a password change or reset committed: make revoked API keys fail at once,
    mail the owner, and answer what was revoked."""
    authenticator(request).forget_user(user.id)
    mail_password_changed(
        mail_outbox(request),
        to=user.email,
        username=user.username,
        how=how,
        revoked=revoked,
        client_address=client_address(request),
        kept_current=kept_current is not None,
    )
    return CredentialsChanged(
        message=message,
        revoked_sessions=revoked.sessions,
        revoked_api_keys=revoked.api_keys,
    )
