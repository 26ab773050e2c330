"""SFTP logins: `<account>.<first 8 characters of the volume id>`, checked by the control plane.

The volume id is the slot's (docs/stateful.md): the login stays the same when the slot
moves to another replica or node. Grants of older control planes carry no volume id:
the server id stands for it.

A login is a password or a public key that the control plane vouches for
(`ControlPlane.sftp_auth`); asyncssh itself then checks the key's signature.
Attempts are reserved in a :class:`common.login_throttle.LoginThrottle` BEFORE the
control plane is asked, one throttle for passwords and a more generous one for keys,
so password guesses never hold back a key login.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import asyncssh

from agent.controlplane_client import ControlPlane, ControlPlaneError, SFTPGrant
from agent.sftp.tree import ConfinedTree
from common.logging import get_logger
from common.login_throttle import DelayCurve, LoginReservation, LoginThrottle

SHORT_ID_LENGTH = 8
_SHORT_ID = re.compile(r"^[A-Za-z0-9_-]{8}$")
_SERVER_ID = re.compile(r"^[A-Za-z0-9_-]{8,128}$")
log = get_logger(__name__)
#: SSH clients offer every key they hold, one failed attempt each: keys get a budget of
#: their own, generous enough for that, and password failures never touch it.
KEY_CURVE = DelayCurve(free=20, base=0.5, cap=10.0)


def key_login_throttle() -> LoginThrottle:
    """The throttle for public-key attempts."""
    return LoginThrottle(pair=KEY_CURVE, account=KEY_CURVE, address=KEY_CURVE)


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
    """Checks one login attempt: reserve it in the throttle, then ask the control plane.

    `check` returns the grant, or None for any refusal (the reason is logged, never
    told to the client). An attempt the throttle holds back is refused without asking
    the control plane; outages of the control plane refuse without counting as a
    failed attempt.
    """

    def __init__(
        self,
        control_plane: ControlPlane,
        passwords: LoginThrottle | None = None,
        keys: LoginThrottle | None = None,
        volume_of: Callable[[str], str | None] = lambda _server_id: None,
    ) -> None:
        self._control_plane = control_plane
        self._volume_of = volume_of
        self._passwords = passwords or LoginThrottle()
        self._keys = keys or key_login_throttle()

    async def check(
        self, username: str, client_address: str, credential: Credential
    ) -> SFTPGrant | None:
        throttle = self._passwords if credential.password is not None else self._keys
        attempt = throttle.reserve(username.lower(), client_address)
        if not isinstance(attempt, LoginReservation):
            log.info("sftp_login_throttled", username=username, client=client_address)
            return None
        try:
            reason, grant = await self._ask(username, client_address, credential)
        except BaseException:
            attempt.released()
            raise
        if grant is None:
            if reason is None:
                attempt.released()  # an outage, not the client's failure
            else:
                log.info(
                    "sftp_login_failed", username=username, client=client_address, reason=reason
                )
            return None
        attempt.succeeded()
        return grant

    async def _ask(
        self, username: str, client_address: str, credential: Credential
    ) -> tuple[str | None, SFTPGrant | None]:
        """(why it failed, None) or (None, the grant); (None, None) for an outage."""
        parsed = parse_login(username)
        if parsed is None:
            return "malformed username", None
        try:
            grant = await self._control_plane.sftp_auth(
                username,
                client_address=client_address,
                password=credential.password,
                public_key=credential.public_key,
            )
        except ControlPlaneError as exc:
            if exc.definitive:
                return exc.code, None
            log.warning("sftp_login_control_plane_down", error=str(exc))
            return None, None
        problem = grant_problem(grant, parsed[1], self._volume_of(grant.server_id))
        return (problem, None) if problem else (None, grant)


def grant_problem(grant: SFTPGrant, short_id: str, known_volume: str | None) -> str | None:
    """Why a grant cannot be used for a login naming `short_id` (None: it can);
    `known_volume` is the volume this agent runs the granted server with (None: it
    does not run it yet)."""
    if not _SERVER_ID.match(grant.server_id) or not _SERVER_ID.match(grant.volume):
        return "control plane named an invalid server or volume id"
    if not grant.volume.lower().startswith(short_id):
        return "control plane answered for another server"
    if known_volume is not None and known_volume != grant.volume:
        return "control plane named another volume than the server's"
    if not grant.can_read:
        return "no file.read permission"
    return None


def openssh_key_line(key: asyncssh.SSHKey) -> str:
    """`<type> <base64>` of a public key, without a comment."""
    exported = key.export_public_key("openssh").decode("ascii")
    return " ".join(exported.split()[:2])
