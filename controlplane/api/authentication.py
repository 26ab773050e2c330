"""Who is calling: bearer credentials (access JWT or API key) resolved to a user.

Handlers never parse headers themselves: routes declare `USER` or `ADMIN` access and
read the caller with `current_user(request)` from :mod:`controlplane.api.context`.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from typing import TypeVar

from aiohttp import web
from pydantic import ConfigDict
from sqlalchemy import update
from sqlmodel import col, select

from common.logging import get_logger
from controlplane.api.errors import Forbidden, Unauthorized
from controlplane.api.schemas import Profile, Snapshot
from controlplane.db.engine import Database
from controlplane.db.notify import Notifier
from controlplane.db.tables import ApiKey, AuthSession, User
from controlplane.security.access_tokens import AccessTokenError, verify_access_token
from controlplane.security.credentials import ServerKeys, looks_like_api_key
from controlplane.state import AUTHENTICATOR

# last_used is written at most this often per key: a write per request would make
# every authenticated read a database write.
LAST_USED_WRITE_INTERVAL = 60.0
#: Entries per cache before stale ones are swept out (a rotating access token leaves
#: one behind per refresh until it goes stale).
MAX_CACHED = 10_000
#: NOTIFY channel of revocations: payload ``key:<api key id>``, ``session:<session id>``
#: or ``user:<user id>``.
AUTH_CHANNEL = "encedeus_auth"

log = get_logger(__name__)


class ProfileSnapshot(Profile, Snapshot):
    """A Profile that is rendered to JSON once: the caller's own, see
    :attr:`CurrentUser.profile`."""


class CurrentUser(Profile):
    """The authenticated caller: a snapshot of the account as of authentication.

    At most one of session_id/api_key_id is set (the credential used). The snapshot
    may come from the per-process credential cache; every write to an account calls
    `Authenticator.forget_user`, so it is never older than that.
    """

    model_config = ConfigDict(frozen=True)

    session_id: uuid.UUID | None = None
    api_key_id: uuid.UUID | None = None

    @classmethod
    def of(
        cls, user: User, *, session_id: uuid.UUID | None = None, api_key_id: uuid.UUID | None = None
    ) -> CurrentUser:
        """The caller for a user row and the credential that proved it."""
        snapshot = cls.model_validate(user, from_attributes=True)
        return snapshot.model_copy(update={"session_id": session_id, "api_key_id": api_key_id})

    @cached_property
    def profile(self) -> ProfileSnapshot:
        """The profile view of the snapshot (without the credential ids), built once:
        a cached API key serves the same snapshot until the account changes."""
        return ProfileSnapshot.model_validate(
            {name: getattr(self, name) for name in Profile.model_fields}
        )


CURRENT_USER = web.RequestKey("current_user", CurrentUser)


@dataclass(slots=True)
class _CachedKey:
    user: CurrentUser
    expires_at: datetime | None
    cached_at: float
    last_used_written: float


@dataclass(frozen=True, slots=True)
class _CachedSession:
    user: CurrentUser
    ends_at: float  # time.time() of the token's or the session's end, the earlier
    cached_at: float


_Entry = TypeVar("_Entry", _CachedKey, _CachedSession)


def bearer_token(request: web.Request) -> str | None:
    """The credential of an `Authorization: Bearer ...` header, if any."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


#: Seed 003's header: the raw access token (or API key), no scheme.
ACCESS_TOKEN_HEADER = "access_token"  # noqa: S105


def api_credential(request: web.Request) -> str | None:
    """The caller's credential: seed 003's `access_token` header when present (then an
    `Authorization` header is not ours: seed 003 sends the forge token there), else
    `Authorization: Bearer`."""
    seed_token = request.headers.get(ACCESS_TOKEN_HEADER, "").strip()
    if seed_token:
        return seed_token
    return bearer_token(request)


def authenticated_by_access_token_header(request: web.Request) -> bool:
    """Whether the caller used seed 003's `access_token` header."""
    return bool(request.headers.get(ACCESS_TOKEN_HEADER, "").strip())


class Authenticator:
    """Turns bearer credentials into a CurrentUser, or raises Unauthorized.

    API-key lookups are cached for `cache_seconds`, access tokens' session checks for
    `session_cache_seconds` (per process). Anything that revokes a key or a session
    or changes an account must call `forget_api_key` / `forget_session` /
    `forget_user` so that the change takes effect on the very next request here, and
    within a second on every other control plane once :meth:`follow` was called.
    Requests that find a key missing or stale at the same time share one database
    load.
    """

    def __init__(
        self,
        database: Database,
        keys: ServerKeys,
        cache_seconds: float,
        session_cache_seconds: float,
    ) -> None:
        self._db = database
        self._keys = keys
        self._cache_seconds = cache_seconds
        self._session_cache_seconds = session_cache_seconds
        # Keyed by the access token itself; only tokens whose session was found open.
        self._sessions: dict[str, _CachedSession] = {}
        # Keyed by the presented key itself (it is in every request anyway), so a hit
        # costs one dict lookup: no checksum, no HMAC. Only valid keys get in.
        self._api_keys: dict[str, _CachedKey] = {}
        # Bumped by every forget_*: a lookup that raced with a revocation must not
        # put the revoked key back into the cache.
        self._generation = 0
        # The load in flight per key, with the generation it started in: a request
        # joins it only if nothing was revoked since (it could read the revoked row).
        self._loading: dict[str, tuple[int, asyncio.Task[_CachedKey]]] = {}
        self._notifier: Notifier | None = None

    def cached_caller(self, token: str) -> CurrentUser | None:
        """The caller of an API key whose cache entry is fresh and owes no
        `last_used` write, or of an access token whose session was found open within
        `session_cache_seconds`: the hot path, with no coroutine. None: `authenticate`."""
        entry = self._api_keys.get(token)
        if entry is None:
            return self._cached_session(token)
        now = time.monotonic()
        if now - entry.cached_at > self._cache_seconds:
            return None
        if now - entry.last_used_written >= LAST_USED_WRITE_INTERVAL:
            return None
        if entry.expires_at is not None and entry.expires_at <= datetime.now(UTC):
            return None
        return entry.user

    async def authenticate(self, token: str) -> CurrentUser:
        """The caller `token` proves, or Unauthorized."""
        if token in self._api_keys or looks_like_api_key(token):
            return await self._by_api_key(token)
        if token.startswith("enc_"):
            raise Unauthorized("invalid API key", code="invalid_api_key")
        return await self._by_access_token(token)

    def _cached_session(self, token: str) -> CurrentUser | None:
        entry = self._sessions.get(token)
        if entry is None:
            return None
        if time.monotonic() - entry.cached_at > self._session_cache_seconds:
            return None
        if time.time() >= entry.ends_at:
            return None
        return entry.user

    async def _by_access_token(self, token: str) -> CurrentUser:
        try:
            claims = verify_access_token(self._keys.jwt_key, token)
        except AccessTokenError as exc:
            raise Unauthorized(str(exc), code="invalid_token") from exc
        generation = self._generation
        statement = (
            select(User, AuthSession.expires_at)
            .join(AuthSession, col(AuthSession.user_id) == col(User.id))
            .where(col(AuthSession.id) == claims.session_id, col(User.id) == claims.user_id)
            .where(col(AuthSession.revoked_at).is_(None), col(User.is_active))
            .where(col(AuthSession.expires_at) > datetime.now(UTC))
        )
        async with self._db.session() as session:
            row = (await session.exec(statement)).first()
        if row is None:
            self._sessions.pop(token, None)
            raise Unauthorized("session ended", code="invalid_token")
        user, session_ends = row
        caller = CurrentUser.of(user, session_id=claims.session_id)
        # A revocation while the row was read may have ended the session: not cached.
        if self._session_cache_seconds > 0 and generation == self._generation:
            ends_at = min(claims.expires_at.timestamp(), session_ends.timestamp())
            entry = _CachedSession(user=caller, ends_at=ends_at, cached_at=time.monotonic())
            _remember(self._sessions, token, entry, self._session_cache_seconds)
        return caller

    async def _by_api_key(self, token: str) -> CurrentUser:
        now = time.monotonic()
        cached = self._api_keys.get(token)
        if cached is None or now - cached.cached_at > self._cache_seconds:
            cached = await self._shared_load(token, now)
        if cached.expires_at is not None and cached.expires_at <= datetime.now(UTC):
            self._api_keys.pop(token, None)
            raise Unauthorized("API key expired", code="invalid_api_key")
        if now - cached.last_used_written >= LAST_USED_WRITE_INTERVAL:
            cached.last_used_written = now
            await self._touch(cached.user)
        return cached.user

    async def _shared_load(self, token: str, now: float) -> _CachedKey:
        """One database load per key at a time: concurrent callers await the same
        task (shielded: a caller that goes away does not cancel it for the others)."""
        generation = self._generation
        loading = self._loading.get(token)
        if loading is None or loading[0] != generation:
            task = asyncio.create_task(self._load_api_key(token, now), name="api-key-load")
            loading = (generation, task)
            self._loading[token] = loading
            task.add_done_callback(lambda done: self._loaded(token, done))
        return await asyncio.shield(loading[1])

    def _loaded(self, token: str, task: asyncio.Task[_CachedKey]) -> None:
        current = self._loading.get(token)
        if current is not None and current[1] is task:
            del self._loading[token]
        # Retrieved here so that a load whose callers all went away logs nothing.
        if not task.cancelled():
            task.exception()

    async def _load_api_key(self, token: str, now: float) -> _CachedKey:
        generation = self._generation
        digest = self._keys.credential_hash(token)
        statement = (
            select(ApiKey, User)
            .join(User, col(User.id) == col(ApiKey.user_id))
            .where(col(ApiKey.key_hash) == digest, col(ApiKey.revoked_at).is_(None))
            .where(col(User.is_active))
        )
        async with self._db.session() as session:
            row = (await session.exec(statement)).first()
        if row is None:
            self._api_keys.pop(token, None)
            raise Unauthorized("invalid API key", code="invalid_api_key")
        key, user = row
        previous = self._api_keys.get(token)
        entry = _CachedKey(
            user=CurrentUser.of(user, api_key_id=key.id),
            expires_at=key.expires_at,
            cached_at=now,
            last_used_written=previous.last_used_written if previous else float("-inf"),
        )
        if generation == self._generation:
            _remember(self._api_keys, token, entry, self._cache_seconds)
        return entry

    async def _touch(self, user: CurrentUser) -> None:
        statement = (
            update(ApiKey)
            .where(col(ApiKey.id) == user.api_key_id)
            .values(last_used=datetime.now(UTC).replace(microsecond=0))
        )
        async with self._db.transaction() as session:
            await session.exec(statement)

    def follow(self, notifier: Notifier) -> None:
        """Share revocations with every control plane of the database: each forget_*
        is sent on :data:`AUTH_CHANNEL` (the id only) and every other process drops
        its cached entries (this one did before sending; its own echo, arriving after
        entries were cached again, would only cost reloads); a process whose
        listening connection was lost drops its whole cache when it reconnects (it
        may have missed some)."""
        self._notifier = notifier
        notifier.listen(AUTH_CHANNEL, self._on_revocation, echo=False)
        notifier.on_reconnected(self._forget_everything)

    def _on_revocation(self, payload: str) -> None:
        kind, _, raw_id = payload.partition(":")
        try:
            which = uuid.UUID(raw_id)
        except ValueError:
            log.warning("auth_revocation_unreadable", payload=payload[:80])
            return
        if kind == "key":
            self._forget_key_here(which)
        elif kind == "session":
            self._forget_session_here(which)
        elif kind == "user":
            self._forget_user_here(which)

    def _forget_everything(self) -> None:
        self._generation += 1
        self._api_keys.clear()
        self._sessions.clear()

    def forget_api_key(self, key_id: uuid.UUID) -> None:
        """Drop a key from the cache of every control plane (call on revoke)."""
        self._forget_key_here(key_id)
        if self._notifier is not None:
            self._notifier.notify_soon(AUTH_CHANNEL, f"key:{key_id}")

    def forget_session(self, session_id: uuid.UUID) -> None:
        """Drop a session's access tokens from the cache of every control plane (call
        when the session is revoked)."""
        self._forget_session_here(session_id)
        if self._notifier is not None:
            self._notifier.notify_soon(AUTH_CHANNEL, f"session:{session_id}")

    def forget_user(self, user_id: uuid.UUID) -> None:
        """Drop every cached key and session of a user in every control plane (call
        when the account changes)."""
        self._forget_user_here(user_id)
        if self._notifier is not None:
            self._notifier.notify_soon(AUTH_CHANNEL, f"user:{user_id}")

    def _forget_key_here(self, key_id: uuid.UUID) -> None:
        self._generation += 1
        _drop_where(self._api_keys, lambda user: user.api_key_id == key_id)

    def _forget_session_here(self, session_id: uuid.UUID) -> None:
        self._generation += 1
        _drop_where(self._sessions, lambda user: user.session_id == session_id)

    def _forget_user_here(self, user_id: uuid.UUID) -> None:
        self._generation += 1
        _drop_where(self._api_keys, lambda user: user.id == user_id)
        _drop_where(self._sessions, lambda user: user.id == user_id)


def _drop_where(cache: dict[str, _Entry], matches: Callable[[CurrentUser], bool]) -> None:
    """Remove the entries of `cache` whose caller `matches`."""
    for token in [token for token, entry in cache.items() if matches(entry.user)]:
        del cache[token]


def _remember(cache: dict[str, _Entry], token: str, entry: _Entry, fresh_for: float) -> None:
    """Put `entry` into `cache`; past MAX_CACHED entries the stale ones go first,
    and everything if none was stale."""
    if len(cache) >= MAX_CACHED and token not in cache:
        oldest = time.monotonic() - fresh_for
        for stale in [t for t, e in cache.items() if e.cached_at < oldest]:
            del cache[stale]
        if len(cache) >= MAX_CACHED:
            cache.clear()
    cache[token] = entry


class _Public:
    name = "public"
    security: list[dict[str, list[str]]] = []

    async def authorize(self, request: web.Request) -> None:
        return None


class _User:
    name = "user"
    security: list[dict[str, list[str]]] = [{"bearer": []}]

    async def authorize(self, request: web.Request) -> None:
        token = api_credential(request)
        if token is None:
            raise Unauthorized("an Authorization: Bearer (or access_token) header is required")
        authenticator = request.app[AUTHENTICATOR]
        user = authenticator.cached_caller(token)
        request[CURRENT_USER] = (
            user if user is not None else await authenticator.authenticate(token)
        )


class _Admin(_User):
    name = "admin"

    async def authorize(self, request: web.Request) -> None:
        await super().authorize(request)
        if not request[CURRENT_USER].is_admin:
            raise Forbidden("administrators only", code="admin_required")


#: Anyone, no credentials.
PUBLIC = _Public()
#: Any signed-in account (access token or API key).
USER = _User()
#: Accounts with is_admin.
ADMIN = _Admin()
