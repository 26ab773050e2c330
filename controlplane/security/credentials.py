"""Secrets the control plane hands out, and the keyed hashes it stores instead.

API keys look like `enc_<30 random base62><6 base62 checksum>`; the checksum (CRC32
of the random part) lets a typo or a foreign token be refused without a database
lookup. Refresh and reset tokens are opaque random strings. Only HMAC-SHA256 digests
keyed with a server-derived key reach the database.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string
import zlib

API_KEY_PREFIX = "enc_"
_ALPHABET = string.digits + string.ascii_letters
_RANDOM_LEN = 30
_CHECKSUM_LEN = 6
API_KEY_LENGTH = len(API_KEY_PREFIX) + _RANDOM_LEN + _CHECKSUM_LEN
VISIBLE_PREFIX_LEN = 12
_SHAPE = re.compile(rf"{API_KEY_PREFIX}[0-9A-Za-z]{{{_RANDOM_LEN + _CHECKSUM_LEN}}}")


def _base62(number: int, width: int) -> str:
    digits = []
    for _ in range(width):
        number, rest = divmod(number, 62)
        digits.append(_ALPHABET[rest])
    return "".join(reversed(digits))


def _checksum(random_part: str) -> str:
    return _base62(zlib.crc32(random_part.encode()), _CHECKSUM_LEN)


def new_api_key() -> str:
    """A fresh API key with its checksum."""
    random_part = "".join(secrets.choice(_ALPHABET) for _ in range(_RANDOM_LEN))
    return f"{API_KEY_PREFIX}{random_part}{_checksum(random_part)}"


def looks_like_api_key(token: str) -> bool:
    """True when `token` has the API key shape and a correct checksum."""
    if _SHAPE.fullmatch(token) is None:
        return False
    body = token[len(API_KEY_PREFIX) :]
    random_part, checksum = body[:_RANDOM_LEN], body[_RANDOM_LEN:]
    return hmac.compare_digest(_checksum(random_part), checksum)


def visible_prefix(api_key: str) -> str:
    """The part of a key that may be shown again (enough to recognise it)."""
    return api_key[:VISIBLE_PREFIX_LEN]


def new_opaque_token() -> str:
    """A random URL-safe token (refresh and password-reset tokens)."""
    return secrets.token_urlsafe(32)


class ServerKeys:
    """Purpose-bound keys derived from the one server secret.

    The JWT signing key and the hashing key differ, so a leaked hash key cannot
    forge tokens. Changing the server secret invalidates every token and API key.
    Created empty when the app is built; `load` fills it at startup (the secret may
    have to be read from the data directory first).
    """

    def __init__(self, server_secret: str | None = None) -> None:
        self._jwt_key: bytes | None = None
        self._hash_key: bytes | None = None
        if server_secret is not None:
            self.load(server_secret)

    def load(self, server_secret: str) -> None:
        """Derive the keys from `server_secret` (at least 16 characters)."""
        if len(server_secret) < 16:
            raise ValueError("the JWT secret must be at least 16 characters")
        root = server_secret.encode()
        self._jwt_key = self._derive(root, b"jwt-access-tokens")
        self._hash_key = self._derive(root, b"stored-credential-hashes")

    @staticmethod
    def _derive(root: bytes, purpose: bytes) -> bytes:
        return hmac.new(root, purpose, hashlib.sha256).digest()

    @property
    def jwt_key(self) -> bytes:
        """The HS256 key for access tokens."""
        if self._jwt_key is None:
            raise RuntimeError("server keys used before startup loaded them")
        return self._jwt_key

    def credential_hash(self, secret: str) -> str:
        """The hex digest stored for an API key, refresh token or reset token."""
        if self._hash_key is None:
            raise RuntimeError("server keys used before startup loaded them")
        return hmac.new(self._hash_key, secret.encode(), hashlib.sha256).hexdigest()
