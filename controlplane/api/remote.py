"""/v1/remote/*: calls agents make to the control plane, authenticated by the node
secret (`Authorization: Bearer <secret>`), never by a user credential.

`POST /v1/remote/sftp/auth` checks an SFTP login (docs/protocols/sftp.md): the user
name is `<account username>.<first 8 characters of the slot's volume id>` (the same
for the life of the slot, whichever replica runs it: docs/stateful.md); the login
resolves to the slot's current replica, which must be assigned to the calling node,
owned by the active account (or the account is an admin); only then is the password
(argon2, in a thread) or registered SSH key checked. Password attempts go through the
login throttle shared with HTTP login (reserved before verification, per account,
client address and both; see common/login_throttle.py); public-key attempts have
their own budget per node and account, so password failures never block a key login.
"""

from __future__ import annotations

import hmac
import uuid
from collections.abc import Sequence
from typing import Protocol

from aiohttp import web
from pydantic import BaseModel, Field, model_validator
from sqlmodel import col, select

from controlplane.api.auth import reserve_password_attempt
from controlplane.api.authentication import bearer_token
from controlplane.api.context import database
from controlplane.api.errors import ApiError, NotFound, Unauthorized, rate_limited
from controlplane.api.schemas import Request
from controlplane.api.ssh_keys import parse_public_key
from controlplane.db.tables import Deployment, Node, Replica, SshKey, User
from controlplane.security.passwords import verify_password
from controlplane.state import RATE_LIMITER

SERVER_PREFIX_LENGTH = 8
FILE_PERMISSIONS = ["file.read", "file.write"]


class SftpLogin(Request):
    """One SFTP login attempt, exactly one of `password` and `public_key`."""

    username: str = Field(min_length=3, max_length=100)
    client_address: str = Field(default="", max_length=100)
    password: str | None = Field(default=None, max_length=1024)
    public_key: str | None = Field(default=None, max_length=16384)
    revalidate: bool = False

    @model_validator(mode="after")
    def _one_credential(self) -> SftpLogin:
        if (self.password is None) == (self.public_key is None):
            raise ValueError("give exactly one of password and public_key")
        return self


class SftpGrant(BaseModel):
    """What the account may do on the server's files."""

    server_id: str
    user_id: str
    permissions: list[str]
    read_only: bool = False
    disk_limit_bytes: int = 0
    volume_id: str = ""


async def calling_node(request: web.Request) -> Node:
    """The node whose secret is the bearer credential (401 otherwise)."""
    presented = bearer_token(request) or ""
    async with database(request).session() as session:
        nodes = (await session.exec(select(Node).where(col(Node.secret).is_not(None)))).all()
    for node in nodes:
        if node.secret and hmac.compare_digest(node.secret.encode(), presented.encode()):
            return node
    raise Unauthorized("unknown node secret", code="invalid_node_secret")


def _split(username: str) -> tuple[str, str]:
    account, _, prefix = username.rpartition(".")
    if not account or len(prefix) != SERVER_PREFIX_LENGTH:
        raise Unauthorized("user name must be <username>.<volume id prefix>", code="bad_username")
    return account, prefix.lower()


async def _credential_ok(request: web.Request, user: User | None, body: SftpLogin) -> bool:
    if body.password is not None:
        return await verify_password(user.password_hash if user else None, body.password)
    if user is None or body.public_key is None:
        return False
    try:
        fingerprint = parse_public_key(body.public_key).fingerprint
    except ValueError:
        return False
    async with database(request).session() as session:
        key = (
            await session.exec(
                select(SshKey).where(
                    col(SshKey.user_id) == user.id, col(SshKey.fingerprint) == fingerprint
                )
            )
        ).first()
    return key is not None


class Account(Protocol):
    """What the file permission rule reads of an account (a row or the caller)."""

    @property
    def id(self) -> uuid.UUID: ...
    @property
    def is_admin(self) -> bool: ...
    @property
    def is_active(self) -> bool: ...


def file_permissions(user: Account | None, deployment: Deployment) -> list[str]:
    """What `user` may do with the files of `deployment`'s servers, over SFTP and the
    HTTP file API alike: the owner and admins (active accounts) read and write; anyone
    else nothing (an empty list). A grant without `file.write` is read-only."""
    if user is None or not user.is_active:
        return []
    if deployment.user_id == user.id or user.is_admin:
        return list(FILE_PERMISSIONS)
    return []


def _usable_replica(
    rows: Sequence[tuple[Replica, Deployment]], prefix: str, user: User | None
) -> tuple[Replica, Deployment, list[str]] | None:
    """The replica whose slot's volume id starts with `prefix` that `user` may log in
    to, and what the login may do."""
    for replica, deployment in rows:
        granted = file_permissions(user, deployment)
        if str(replica.slot_volume).startswith(prefix) and granted:
            return replica, deployment, granted
    return None


async def sftp_auth(request: web.Request, body: SftpLogin) -> SftpGrant:
    """Check an SFTP login on the calling node and return the grant.

    The credential is checked only against an account that may use a server with that
    prefix on the calling node, so a node's secret cannot test passwords or keys of
    other accounts. A password attempt is reserved in the login throttle before it is
    verified; key failures count against their own budget per node and account."""
    node = await calling_node(request)
    account, prefix = _split(body.username)
    if body.password is None:
        return await _key_login(request, node, account, prefix, body)
    attempt = reserve_password_attempt(request, account, body.client_address)
    try:
        grant = await _grant(request, node, account, prefix, body)
    except ApiError:
        raise  # refused: the reservation stands as the failure
    except BaseException:
        attempt.released()
        raise
    attempt.succeeded()
    return grant


async def _key_login(
    request: web.Request, node: Node, account: str, prefix: str, body: SftpLogin
) -> SftpGrant:
    budget = f"sftp-key-auth {node.id} {account}"
    limiter = request.app[RATE_LIMITER]
    if (wait := limiter.retry_after(budget)) is not None:
        raise rate_limited(wait)
    try:
        return await _grant(request, node, account, prefix, body)
    except ApiError:
        limiter.hit(budget)
        raise


async def _grant(
    request: web.Request, node: Node, account: str, prefix: str, body: SftpLogin
) -> SftpGrant:
    async with database(request).session() as session:
        user = (await session.exec(select(User).where(col(User.username) == account))).first()
        rows = (
            await session.exec(
                select(Replica, Deployment)
                .join(Deployment, col(Deployment.id) == col(Replica.deployment_id))
                .where(col(Replica.node_id) == node.id)
            )
        ).all()
    usable = _usable_replica(rows, prefix, user)
    if usable is None or user is None:
        if body.password is not None:  # the time a password check takes, either way
            await verify_password(None, body.password)
        raise NotFound("no such server on this node", code="server_not_found")
    if not await _credential_ok(request, user, body):
        raise Unauthorized("invalid credentials", code="invalid_credentials")
    replica, deployment, permissions = usable
    return SftpGrant(
        server_id=str(replica.id),
        user_id=str(user.id),
        permissions=permissions,
        read_only="file.write" not in permissions,
        disk_limit_bytes=deployment.disk_bytes,
        volume_id=str(replica.slot_volume),
    )
