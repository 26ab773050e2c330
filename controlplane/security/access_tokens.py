"""Short-lived access tokens: HS256 JWTs bound to a login session."""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import jwt

ALGORITHM = "HS256"
ISSUER = "encedeus"
TOKEN_TYPE = "access"  # noqa: S105
_REQUIRED = ["iss", "sub", "sid", "typ", "iat", "exp", "jti"]


class AccessTokenError(ValueError):
    """Malformed, forged, expired or otherwise unusable access token."""


@dataclass(frozen=True, slots=True)
class AccessClaims:
    """What a verified access token says: whose it is and which session issued it."""

    user_id: uuid.UUID
    session_id: uuid.UUID
    expires_at: datetime


def issue_access_token(
    key: bytes, *, user_id: uuid.UUID, session_id: uuid.UUID, ttl: timedelta
) -> tuple[str, datetime]:
    """A signed token for `user_id` in `session_id` and the moment it expires."""
    now = datetime.now(UTC)
    expires = now + ttl
    claims = {
        "iss": ISSUER,
        "sub": str(user_id),
        "sid": str(session_id),
        "typ": TOKEN_TYPE,
        "iat": int(now.timestamp()),
        "exp": int(expires.timestamp()),
        "jti": secrets.token_hex(8),
    }
    return jwt.encode(claims, key, algorithm=ALGORITHM), expires.replace(microsecond=0)


def verify_access_token(key: bytes, token: str) -> AccessClaims:
    """Check signature (HS256 only), issuer, type, lifetime and required claims."""
    try:
        claims = jwt.decode(
            token, key, algorithms=[ALGORITHM], issuer=ISSUER, options={"require": _REQUIRED}
        )
        if claims["typ"] != TOKEN_TYPE:
            raise AccessTokenError("not an access token")
        return AccessClaims(
            user_id=uuid.UUID(str(claims["sub"])),
            session_id=uuid.UUID(str(claims["sid"])),
            expires_at=datetime.fromtimestamp(int(claims["exp"]), UTC),
        )
    except jwt.ExpiredSignatureError as exc:
        raise AccessTokenError("access token expired") from exc
    except (jwt.InvalidTokenError, ValueError, TypeError) as exc:
        raise AccessTokenError("invalid access token") from exc
