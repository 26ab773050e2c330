"""/v1/auth: register, login, refresh, logout, forgot-password, reset-password."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from aiohttp import web
from pydantic import BaseModel, Field, model_validator
from sqlalchemy import update
from sqlmodel import col, select

from common.login_throttle import LoginReservation
from controlplane.account_changes import revoke_credentials
from controlplane.accounts import check_password, create_user, set_password
from controlplane.api.authentication import bearer_token
from controlplane.api.context import (
    authenticator,
    current_user,
    database,
    mail_outbox,
    server_keys,
    settings,
)
from controlplane.api.endpoints import client_address
from controlplane.api.errors import ApiError, Forbidden, Unauthorized, rate_limited
from controlplane.api.profile import CredentialsChanged, password_set
from controlplane.api.refresh_cookie import refresh_token_from_cookie
from controlplane.api.schemas import (
    Email,
    MessageResponse,
    Password,
    Request,
    Username,
    UserSummary,
)
from controlplane.db.tables import PasswordReset, User
from controlplane.security.credentials import new_opaque_token
from controlplane.sessions import SessionIssuer, TokenGrant
from controlplane.state import LOGIN_THROTTLE

FORGOT_PASSWORD_ANSWER = (
    "If an account with that email exists, a password reset token has been sent."  # noqa: S105
)


class RegisterRequest(Request):
    """A new account (seed 001 rules)."""

    username: Username
    email: Email
    password: Password
    confirm_password: str | None = Field(default=None, max_length=256)

    @model_validator(mode="after")
    def _passwords_match(self) -> RegisterRequest:
        if self.confirm_password is not None and self.confirm_password != self.password:
            raise ValueError("confirm_password does not match password")
        return self


class LoginRequest(Request):
    """Credentials: `email` or `username`, and the password."""

    email: str | None = Field(default=None, max_length=320)
    username: str | None = Field(default=None, max_length=64)
    password: str = Field(min_length=1, max_length=256)

    @model_validator(mode="after")
    def _one_login(self) -> LoginRequest:
        if not (self.email or self.username):
            raise ValueError("give email or username")
        return self


class RefreshRequest(Request):
    """The refresh token (or send it as `Authorization: Bearer`)."""

    refresh_token: str | None = Field(default=None, max_length=512)


class ForgotPasswordRequest(Request):
    """Where to send the reset token."""

    email: str = Field(max_length=320)


class ResetPasswordRequest(Request):
    """The mailed token and the new password. By default every session and every API
    key of the account is revoked (a reset is what an owner does after losing control);
    `revoke_sessions` / `revoke_api_keys` = false keep them."""

    token: str = Field(min_length=1, max_length=512)
    new_password: Password
    confirm_password: str | None = Field(default=None, max_length=256)
    revoke_sessions: bool = True
    revoke_api_keys: bool = True

    @model_validator(mode="after")
    def _passwords_match(self) -> ResetPasswordRequest:
        if self.confirm_password is not None and self.confirm_password != self.new_password:
            raise ValueError("confirm_password does not match new_password")
        return self


class TokenResponse(BaseModel):
    """A login or refresh: the short-lived access token and the next refresh token."""

    access_token: str
    refresh_token: str
    token_type: str = "Bearer"  # noqa: S105
    expires_at: datetime
    user: UserSummary


def _issuer(request: web.Request) -> SessionIssuer:
    return SessionIssuer(
        database(request),
        server_keys(request),
        settings(request),
        forget_session=authenticator(request).forget_session,
    )


def _token_response(grant: TokenGrant, user: User) -> TokenResponse:
    summary = UserSummary(
        id=user.id, username=user.username, email=user.email, is_admin=user.is_admin
    )
    return TokenResponse(
        access_token=grant.access_token,
        refresh_token=grant.refresh_token,
        expires_at=grant.expires_at,
        user=summary,
    )


async def _open_session(request: web.Request, user: User) -> TokenResponse:
    grant = await _issuer(request).open(
        user,
        user_agent=request.headers.get("User-Agent", ""),
        client_address=client_address(request),
    )
    authenticator(request).forget_user(user.id)  # last_login changed
    return _token_response(grant, user)


async def register(request: web.Request, body: RegisterRequest) -> TokenResponse:
    """Create an account and sign it in (the first account is an admin)."""
    if settings(request).registration == "closed":
        raise Forbidden("registration is closed on this server", code="registration_closed")
    user = await create_user(
        database(request),
        username=body.username,
        email=body.email,
        password=body.password,
        quota=settings(request).default_quota,
    )
    return await _open_session(request, user)


def reserve_password_attempt(request: web.Request, account: str, address: str) -> LoginReservation:
    """Count one password attempt on `account` from `address` BEFORE the password is
    verified (429 with Retry-After when it must wait; see common/login_throttle.py).
    The caller reports `succeeded()` or `released()`; a wrong password needs no call."""
    outcome = request.app[LOGIN_THROTTLE].reserve(account, address)
    if not isinstance(outcome, LoginReservation):
        raise rate_limited(outcome)
    return outcome


async def login(request: web.Request, body: LoginRequest) -> TokenResponse:
    """Sign in with email or username and password (throttled per account and
    address before the password is checked)."""
    login_name = body.email.lower() if body.email else (body.username or "")
    attempt = reserve_password_attempt(request, login_name, client_address(request))
    try:
        user = await check_password(database(request), login=login_name, password=body.password)
    except BaseException:
        attempt.released()
        raise
    if user is None:
        raise Unauthorized("invalid credentials", code="invalid_credentials")
    attempt.succeeded()
    return await _open_session(request, user)


async def refresh(request: web.Request, body: RefreshRequest | None) -> TokenResponse:
    """Trade a refresh token (body or Bearer) for new tokens; reuse revokes the session."""
    token = (
        (body.refresh_token if body else None)
        or bearer_token(request)
        or refresh_token_from_cookie(request)
    )
    if not token:
        raise Unauthorized("a refresh token is required", code="invalid_refresh_token")
    grant = await _issuer(request).refresh(token)
    return _token_response(grant, grant.user)


async def logout(request: web.Request) -> MessageResponse:
    """End the session of the access token used (API keys have no session)."""
    user = current_user(request)
    if user.session_id is not None:
        await _issuer(request).revoke(user.session_id)
    return MessageResponse(message="Successfully logged out")


async def forgot_password(request: web.Request, body: ForgotPasswordRequest) -> MessageResponse:
    """Mail a reset token; the answer is the same whether or not the account exists."""
    config = settings(request)
    email = body.email.strip().lower()
    async with database(request).transaction() as session:
        user = (await session.exec(select(User).where(col(User.email) == email))).first()
        if user is not None and user.is_active:
            token = new_opaque_token()
            session.add(
                PasswordReset(
                    user_id=user.id,
                    token_hash=server_keys(request).credential_hash(token),
                    expires_at=datetime.now(UTC)
                    + timedelta(minutes=config.password_reset_ttl_minutes),
                )
            )
            mail_outbox(request).post(
                user.email,
                "Encedeus password reset",
                _reset_mail(
                    user.username, token, config.password_reset_ttl_minutes, config.public_url
                ),
            )
    return MessageResponse(message=FORGOT_PASSWORD_ANSWER)


def _reset_mail(username: str, token: str, minutes: int, public_url: str) -> str:
    """The reset mail: the token, and with `public_url` a link to the web UI's reset page
    carrying it in the fragment (never sent to a server, so no access log keeps it)."""
    link = (
        f"Or open {public_url.rstrip('/')}/reset-password#token={token}\n\n" if public_url else ""
    )
    return (
        f"Hello {username},\n\n"
        "Someone asked to reset the password of your Encedeus account. If it was you,\n"
        f"use this token within {minutes} minutes:\n\n"
        f"Token: {token}\n\n"
        f"{link}"
        "If it was not you, ignore this message; your password has not changed.\n"
    )


async def reset_password(request: web.Request, body: ResetPasswordRequest) -> CredentialsChanged:
    """Set a new password with a mailed token; by default every session and API key of
    the account is revoked. The owner is e-mailed."""
    digest = server_keys(request).credential_hash(body.token)
    now = datetime.now(UTC)
    async with database(request).transaction() as session:
        spent = await session.exec(
            update(PasswordReset)
            .where(col(PasswordReset.token_hash) == digest, col(PasswordReset.used_at).is_(None))
            .where(col(PasswordReset.expires_at) > now)
            .values(used_at=now)
            .returning(col(PasswordReset.user_id))
        )
        user_id = spent.scalar_one_or_none()
        if user_id is None:
            raise ApiError("invalid or expired reset token", code="invalid_reset_token")
        user = await set_password(session, user_id, body.new_password)
        revoked = await revoke_credentials(
            session, user_id, sessions=body.revoke_sessions, api_keys=body.revoke_api_keys
        )
    return password_set(request, user, revoked, how="reset", message="Password reset successfully")
