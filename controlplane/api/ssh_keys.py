"""/v1/user/ssh-keys: OpenSSH public keys that let the account into SFTP."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

import asyncssh
from aiohttp import web
from pydantic import BaseModel, Field
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from controlplane.api.context import current_user, database
from controlplane.api.errors import Conflict, NotFound, Unprocessable
from controlplane.api.owned_rows import delete_own, page_of_own
from controlplane.api.pagination import PageQuery, Pagination
from controlplane.api.schemas import MessageResponse, Request
from controlplane.db.tables import SshKey

MIN_RSA_BITS = 2048


class AddSshKey(Request):
    """A public key in OpenSSH format (`ssh-ed25519 AAAA... comment`)."""

    name: str = Field(min_length=1, max_length=100)
    public_key: str = Field(min_length=1, max_length=16384)


class SshKeyInfo(BaseModel):
    """A registered key."""

    id: uuid.UUID
    name: str
    public_key: str
    fingerprint: str
    created_at: datetime


class SshKeyList(BaseModel):
    """A page of the caller's SSH keys."""

    ssh_keys: list[SshKeyInfo]
    pagination: Pagination


@dataclass(frozen=True, slots=True)
class ParsedPublicKey:
    """A validated key: its canonical one-line form and SHA256 fingerprint."""

    openssh: str
    fingerprint: str


def parse_public_key(text: str) -> ParsedPublicKey:
    """Validate an OpenSSH public key line; ValueError when it is not one we accept."""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    if len(lines) != 1:
        raise ValueError("give exactly one public key line")
    try:
        key = asyncssh.import_public_key(lines[0])
    except (asyncssh.KeyImportError, ValueError, TypeError) as exc:
        raise ValueError(f"not an OpenSSH public key: {exc}") from exc
    algorithm = key.get_algorithm()
    if algorithm == "ssh-rsa" and getattr(key.pyca_key, "key_size", 0) < MIN_RSA_BITS:
        raise ValueError(f"RSA keys must have at least {MIN_RSA_BITS} bits")
    openssh = key.export_public_key("openssh").decode().strip()
    return ParsedPublicKey(openssh=openssh, fingerprint=key.get_fingerprint("sha256"))


def _info(key: SshKey) -> SshKeyInfo:
    return SshKeyInfo.model_validate(key, from_attributes=True)


async def add_ssh_key(request: web.Request, body: AddSshKey) -> SshKeyInfo:
    """Register a public key for the caller (409 if it is already registered)."""
    try:
        parsed = parse_public_key(body.public_key)
    except ValueError as exc:
        raise Unprocessable(str(exc), code="invalid_ssh_key") from exc
    user_id = current_user(request).id
    key = SshKey(
        user_id=user_id, name=body.name, public_key=parsed.openssh, fingerprint=parsed.fingerprint
    )
    try:
        async with database(request).transaction() as session:
            existing = await session.exec(
                select(SshKey.id).where(
                    col(SshKey.user_id) == user_id, col(SshKey.fingerprint) == parsed.fingerprint
                )
            )
            if existing.first() is not None:
                raise Conflict("this key is already registered", code="ssh_key_exists")
            session.add(key)
    except IntegrityError as exc:
        raise Conflict("this key is already registered", code="ssh_key_exists") from exc
    return _info(key)


async def list_ssh_keys(request: web.Request, query: PageQuery) -> SshKeyList:
    """The caller's keys, oldest first."""
    keys, pagination = await page_of_own(request, SshKey, query)
    return SshKeyList(ssh_keys=[_info(key) for key in keys], pagination=pagination)


async def delete_ssh_key(request: web.Request) -> MessageResponse:
    """Remove one of the caller's keys."""
    await delete_own(request, SshKey, NotFound("no such SSH key", code="ssh_key_not_found"))
    return MessageResponse(message="SSH key deleted successfully")
