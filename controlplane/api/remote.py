"""/v1/remote/*: calls agents make to the control plane, authenticated by the node
secret (`Authorization: Bearer <secret>`), never by a user credential.

`POST /v1/remote/sftp/auth` checks an SFTP login (docs/protocols/sftp.md): the user
name is `<account username>.<first 8 characters of the server id>`; the server must
be a replica assigned to the calling node, owned by the account (or the account is an
admin); the password (argon2, in a thread) or a registered SSH key must match.
"""

from __future__ import annotations

import hmac

from aiohttp import web
from pydantic import BaseModel, Field, model_validator
from sqlmodel import col, select

from controlplane.api.authentication import bearer_token
from controlplane.api.context import database
from controlplane.api.errors import NotFound, Unauthorized
from controlplane.api.schemas import Request
from controlplane.api.ssh_keys import parse_public_key
from controlplane.db.tables import Deployment, Node, Replica, SshKey, User
from controlplane.security.passwords import verify_password

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
        raise Unauthorized("user name must be <username>.<server id prefix>", code="bad_username")
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


async def sftp_auth(request: web.Request, body: SftpLogin) -> SftpGrant:
    """Check an SFTP login on the calling node and return the grant."""
    node = await calling_node(request)
    account, prefix = _split(body.username)
    async with database(request).session() as session:
        user = (await session.exec(select(User).where(col(User.username) == account))).first()
        rows = (
            await session.exec(
                select(Replica, Deployment)
                .join(Deployment, col(Deployment.id) == col(Replica.deployment_id))
                .where(col(Replica.node_id) == node.id)
            )
        ).all()
    if not await _credential_ok(request, user, body) or user is None or not user.is_active:
        raise Unauthorized("invalid credentials", code="invalid_credentials")
    matches = [(r, d) for r, d in rows if str(r.id).startswith(prefix)]
    if not matches:
        raise NotFound("no such server on this node", code="server_not_found")
    replica, deployment = matches[0]
    if deployment.user_id != user.id and not user.is_admin:
        # Same answer as a missing server: a stranger learns nothing about it.
        raise NotFound("no such server on this node", code="server_not_found")
    return SftpGrant(
        server_id=str(replica.id), user_id=str(user.id), permissions=list(FILE_PERMISSIONS)
    )
