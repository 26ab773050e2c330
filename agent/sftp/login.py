"""SFTP logins: `<account>.<first 8 characters of the server id>`, checked by the control plane.

A login is a password or a public key that the control plane vouches for
(`ControlPlane.sftp_auth`); asyncssh itself then checks the key's signature.
Failures are throttled per (server, client address) with :class:`LoginThrottle`.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import asyncssh

from agent.controlplane_client import ControlPlane, ControlPlaneError, SFTPGrant
from agent.sftp.throttle import LoginThrottle
from agent.sftp.tree import ConfinedTree
from common.logging import get_logger

SHORT_ID_LENGTH = 8
_SHORT_ID = re.compile(r"^[A-Za-z0-9_-]{8}$")
_SERVER_ID = re.compile(r"^[A-Za-z0-9_-]{8,128}$")
log = get_logger(__name__)


def parse_login(username: str) -> tuple[str, str] | None:
    """(account, lowercased short server id) of an SFTP username, or None if malformed."""
    account, dot, short_id = username.rpartition(".")
    if not dot or not account or not _SHORT_ID.match(short_id):
        return None
    return account, short_id.lower()  # ids are lowercase; clients may type either


@dataclass(frozen=True, slots=True)
class Credential:
    """How a session proved itself; kept so the control plane can re-check it."""

    password: str | None = None
    public_key: str | None = None

    def __repr__(self) -> str:
        return "Credential(password)" if self.password is not None else "Credential(public_key)"


@dataclass(slots=True, eq=False)
class LiveSession:
    """An authenticated SSH connection: who, on which server, and its confined tree."""

    conn: asyncssh.SSHServerConnection
    username: str
    client_address: str
    credential: Credential
    grant: SFTPGrant
    tree: ConfinedTree


class SFTPLogin:
    """Checks one login attempt: throttle first, then the control plane.

    `check` returns the grant, or None for any refusal (the reason is logged, never
    told to the client). Outages of the control plane refuse without counting as a
    failed attempt.
    """

    def __init__(
        self,
        control_plane: ControlPlane,
        throttle: LoginThrottle,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._control_plane = control_plane
        self._throttle = throttle
        self._sleep = sleep

    async def check(
        self, username: str, client_address: str, credential: Credential
    ) -> SFTPGrant | None:
        parsed = parse_login(username)
        key = (parsed[1] if parsed else "", client_address)
        if self._throttle.locked_for(key):
            log.info("sftp_login_locked", username=username, client=client_address)
            return None
        if parsed is None:
            await self._fail(key, username, client_address, "malformed username")
            return None
        try:
            grant = await self._control_plane.sftp_auth(
                username,
                client_address=client_address,
                password=credential.password,
                public_key=credential.public_key,
            )
        except ControlPlaneError as exc:
            if exc.definitive:
                await self._fail(key, username, client_address, exc.code)
            else:
                log.warning("sftp_login_control_plane_down", error=str(exc))
            return None
        problem = grant_problem(grant, parsed[1])
        if problem:
            await self._fail(key, username, client_address, problem)
            return None
        self._throttle.success(key)
        return grant

    async def _fail(self, key: tuple[str, str], username: str, client: str, reason: str) -> None:
        delay = self._throttle.failure(key)
        log.info("sftp_login_failed", username=username, client=client, reason=reason)
        if delay:
            await self._sleep(delay)


def grant_problem(grant: SFTPGrant, short_id: str) -> str | None:
    """Why a grant cannot be used for a login naming `short_id` (None: it can)."""
    if not _SERVER_ID.match(grant.server_id):
        return "control plane named an invalid server id"
    if not grant.server_id.lower().startswith(short_id):
        return "control plane answered for another server"
    if not grant.can_read:
        return "no file.read permission"
    return None


def openssh_key_line(key: asyncssh.SSHKey) -> str:
    """`<type> <base64>` of a public key, without a comment."""
    exported = key.export_public_key("openssh").decode("ascii")
    return " ".join(exported.split()[:2])
