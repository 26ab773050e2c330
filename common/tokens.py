"""The signed-token format shared by the control plane (signer) and agents (verifiers).

A token is an HS256 JWT signed with the node's secret. Claims: `aud` = node id,
`sub` = user id, `server` = server id, `permissions` = list of strings, `scope` = one
of :data:`SCOPES`, `iat`, `exp` (at most :data:`MAX_TTL_SECONDS` after `iat`), `jti`,
and optionally `details`: what the scope needs besides (e.g. the command of an `exec`).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

import jwt

# `transfer`: one agent streams a volume to another (aud = the receiving node,
# `server` = the volume id, details.transfer_id names the one transfer).
Scope = Literal[
    "console", "exec", "file-upload", "file-download", "file-relay", "backup-download", "transfer"
]
SCOPES: frozenset[str] = frozenset(get_args(Scope))
MAX_TTL_SECONDS = 600
_ALGORITHM = "HS256"
_REQUIRED = ["aud", "sub", "server", "permissions", "scope", "iat", "exp", "jti"]


class TokenError(ValueError):
    """The token is malformed, badly signed, expired, or not for this use."""


class TokenExpiredError(TokenError):
    """The token was valid but its `exp` has passed."""


@dataclass(frozen=True, slots=True)
class ServerToken:
    """The verified claims of a server-scoped token."""

    node_id: str
    user_id: str
    server_id: str
    permissions: tuple[str, ...]
    scope: str
    issued_at: float
    expires_at: float
    token_id: str
    details: Mapping[str, Any] = field(default_factory=dict)

    def allows(self, permission: str) -> bool:
        """True when the token grants `permission` (or the wildcard `*`)."""
        return "*" in self.permissions or permission in self.permissions


def sign_server_token(
    secret: str,
    *,
    node_id: str,
    user_id: str,
    server_id: str,
    permissions: list[str],
    scope: Scope,
    ttl_seconds: int = 300,
    now: float | None = None,
    token_id: str | None = None,
    details: Mapping[str, Any] | None = None,
) -> str:
    """Sign a token for `server_id` on `node_id`; ttl is capped at 10 minutes. `token_id`
    (the `jti`, random by default) names one use when the verifier refuses a second;
    `details` (JSON values) is signed along."""
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}")
    if not 0 < ttl_seconds <= MAX_TTL_SECONDS:
        raise ValueError(f"ttl_seconds must be in 1..{MAX_TTL_SECONDS}")
    issued = int(now if now is not None else time.time())
    claims: dict[str, Any] = {
        "aud": node_id,
        "sub": user_id,
        "server": server_id,
        "permissions": list(permissions),
        "scope": scope,
        "iat": issued,
        "exp": issued + ttl_seconds,
        "jti": token_id or secrets.token_hex(8),
    }
    if details:
        claims["details"] = dict(details)
    return jwt.encode(claims, secret, algorithm=_ALGORITHM)


def verify_server_token(
    secret: str,
    token: str,
    *,
    node_id: str,
    scope: Scope,
    not_before: float = 0.0,
    now: float | None = None,
) -> ServerToken:
    """Verify signature, audience, scope and lifetime; refuse tokens issued before
    `not_before` (the agent's start time)."""
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[_ALGORITHM],
            audience=node_id,
            options={"require": _REQUIRED, "verify_exp": False, "verify_iat": False},
        )
    except jwt.InvalidTokenError as exc:
        raise TokenError(f"invalid token: {exc}") from exc
    current = now if now is not None else time.time()
    try:
        issued, expires = float(claims["iat"]), float(claims["exp"])
    except (TypeError, ValueError) as exc:
        raise TokenError("iat and exp must be numbers") from exc
    if expires - issued > MAX_TTL_SECONDS:
        raise TokenError("token lifetime exceeds 10 minutes")
    if claims["scope"] != scope:
        raise TokenError(f"token scope {claims['scope']!r} is not {scope!r}")
    if issued < int(not_before):
        raise TokenError("token was issued before the agent started")
    if current >= expires:
        raise TokenExpiredError("token expired")
    permissions = claims["permissions"]
    if not isinstance(permissions, list) or not all(isinstance(p, str) for p in permissions):
        raise TokenError("permissions must be a list of strings")
    details = claims.get("details", {})
    if not isinstance(details, dict):
        raise TokenError("details must be an object")
    return ServerToken(
        node_id=str(claims["aud"]),
        user_id=str(claims["sub"]),
        server_id=str(claims["server"]),
        permissions=tuple(permissions),
        scope=str(claims["scope"]),
        issued_at=issued,
        expires_at=expires,
        token_id=str(claims["jti"]),
        details=details,
    )
