"""/v1/user/profile, /v1/user/password and the /v1/users/@me alias."""

from __future__ import annotations

from datetime import UTC, datetime

from aiohttp import web
from pydantic import Field, model_validator
from sqlalchemy.exc import IntegrityError

from controlplane.accounts import check_password, set_password
from controlplane.api.authentication import CurrentUser
from controlplane.api.context import authenticator, current_user, database
from controlplane.api.errors import ApiError, Conflict, NotFound
from controlplane.api.schemas import Email, MessageResponse, Password, Profile, Request, Username
from controlplane.db.tables import User
from controlplane.sessions import revoke_sessions


class ProfileUpdate(Request):
    """Fields to change; omitted ones stay."""

    username: Username | None = None
    email: Email | None = None


class PasswordChange(Request):
    """The current password proves it is the owner; the new one replaces it."""

    current_password: str = Field(min_length=1, max_length=256)
    new_password: Password
    confirm_new_password: str | None = Field(default=None, max_length=256)

    @model_validator(mode="after")
    def _passwords_match(self) -> PasswordChange:
        if self.confirm_new_password is not None and self.confirm_new_password != self.new_password:
            raise ValueError("confirm_new_password does not match new_password")
        return self


def profile_of(user: User | CurrentUser) -> Profile:
    """The profile view of a user row (or of the caller's snapshot)."""
    # Field by field: a CurrentUser is a Profile, but its credential ids are no part
    # of the answer.
    return Profile.model_validate({name: getattr(user, name) for name in Profile.model_fields})


async def get_profile(request: web.Request) -> Profile:
    """The caller's own account."""
    # The snapshot taken by authentication is current (every account write
    # invalidates it) and saves the hot path a database round trip.
    return profile_of(current_user(request))


async def update_profile(request: web.Request, body: ProfileUpdate) -> Profile:
    """Change the caller's username and/or e-mail."""
    caller = current_user(request)
    try:
        async with database(request).transaction() as session:
            user = await session.get(User, caller.id)
            if user is None:
                raise NotFound("account not found")
            if body.username is not None:
                user.username = body.username
            if body.email is not None:
                user.email = body.email
            user.updated_at = datetime.now(UTC)
            session.add(user)
            await session.flush()
    except IntegrityError as exc:
        raise Conflict("that username or e-mail is already in use", code="account_exists") from exc
    authenticator(request).forget_user(caller.id)
    return profile_of(user)


async def change_password(request: web.Request, body: PasswordChange) -> MessageResponse:
    """Change the password; every other session of the account ends."""
    caller = current_user(request)
    db = database(request)
    if await check_password(db, login=caller.username, password=body.current_password) is None:
        raise ApiError("the current password is wrong", code="wrong_password")
    async with db.transaction() as session:
        await set_password(session, caller.id, body.new_password)
        await revoke_sessions(session, user_id=caller.id, keep=caller.session_id)
    authenticator(request).forget_user(caller.id)
    return MessageResponse(message="Password updated successfully")
