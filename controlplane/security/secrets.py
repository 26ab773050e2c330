"""Secrets at rest: the one encryption module and key of the control plane.

Forge tokens (``/v1/repos``) and registry credentials are stored sealed with AES-256-GCM
under one key shared by every control plane of a database: ``controlplane { secrets_key
}`` / ``ENCEDEUS_SECRETS_KEY`` (32 bytes, urlsafe base64), else a key generated once into
``<data_dir>/secrets_key`` (0600), as the JWT secret is. A sealed value is text,
``v1.<nonce>.<ciphertext>`` in urlsafe base64, so it fits any string column; the
`purpose` is bound as associated data, so a value sealed for one use cannot be replayed
as another. Values that belong to a row are sealed for their row too
(:meth:`SecretBox.seal_for_row`: ``"forge_token:<repo id>"``, ``"registry_password:<deployment
id>"``), so a value copied into another row of the database does not open there. Values
sealed before rows were bound (with the bare purpose) still open, and are sealed for
their row the next time they are written. Losing the key loses the secrets, nothing else.
"""

from __future__ import annotations

import base64
import binascii
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from controlplane.config import ControlPlaneConfig, secret_in_data_dir

SECRETS_KEY_FILE = "secrets_key"
KEY_BYTES = 32
NONCE_BYTES = 12
VERSION = "v1"


class SecretsKeyInvalid(ValueError):
    """The configured key is not 32 bytes of urlsafe base64."""


class SecretUnreadable(ValueError):
    """A sealed value was altered, sealed under another key or for another purpose."""


def new_secrets_key() -> str:
    """A fresh key in the form `secrets_key` takes."""
    return base64.urlsafe_b64encode(os.urandom(KEY_BYTES)).decode()


def _b64decode(text: str) -> bytes:
    bare = text.rstrip("=")
    return base64.b64decode(bare + "=" * (-len(bare) % 4), altchars=b"-_", validate=True)


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


class SecretBox:
    """Seals and opens short secrets with one AES-256-GCM key (see module doc).

    Made empty by `build_app` and given its key at startup (`load`), since the key may
    live in the data directory; sealing before then is a programming error.
    """

    def __init__(self, key: str | None = None) -> None:
        self._aead: AESGCM | None = None
        if key is not None:
            self.load(key)

    def load(self, key: str) -> None:
        """Use `key` (urlsafe base64 of 32 bytes); SecretsKeyInvalid otherwise."""
        try:
            raw = _b64decode(key.strip())
        except (binascii.Error, ValueError) as exc:
            raise SecretsKeyInvalid("secrets_key is not urlsafe base64") from exc
        if len(raw) != KEY_BYTES:
            raise SecretsKeyInvalid(f"secrets_key must decode to {KEY_BYTES} bytes, not {len(raw)}")
        self._aead = AESGCM(raw)

    def _cipher(self) -> AESGCM:
        if self._aead is None:
            raise RuntimeError("the secrets key is not loaded yet")
        return self._aead

    def seal(self, plaintext: str, purpose: str) -> str:
        """`plaintext` encrypted for `purpose`, as text safe to store."""
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._cipher().encrypt(nonce, plaintext.encode(), purpose.encode())
        return f"{VERSION}.{_b64encode(nonce)}.{_b64encode(sealed)}"

    def open(self, sealed: str, purpose: str) -> str:
        """The plaintext of a value sealed for `purpose`; SecretUnreadable otherwise."""
        version, _, rest = sealed.partition(".")
        nonce_text, _, body_text = rest.partition(".")
        if version != VERSION or not nonce_text or not body_text:
            raise SecretUnreadable("not a sealed secret")
        try:
            nonce, body = _b64decode(nonce_text), _b64decode(body_text)
            return self._cipher().decrypt(nonce, body, purpose.encode()).decode()
        except (binascii.Error, ValueError, InvalidTag) as exc:
            raise SecretUnreadable("the secret cannot be opened with this key") from exc


def row_purpose(purpose: str, row_id: object) -> str:
    """The purpose a value of row `row_id` is sealed for."""
    return f"{purpose}:{row_id}"


def seal_for_row(box: SecretBox, plaintext: str, purpose: str, row_id: object) -> str:
    """`plaintext` sealed for `purpose` of the row `row_id` (see the module doc)."""
    return box.seal(plaintext, row_purpose(purpose, row_id))


def open_for_row(box: SecretBox, sealed: str, purpose: str, row_id: object) -> str:
    """The plaintext of a value sealed for `purpose` of the row `row_id`, or (sealed
    before rows were bound) for the bare `purpose`; SecretUnreadable otherwise."""
    try:
        return box.open(sealed, row_purpose(purpose, row_id))
    except SecretUnreadable:
        return box.open(sealed, purpose)


def resolve_secrets_key(config: ControlPlaneConfig) -> str:
    """The configured key, or one generated once and kept in the data directory.

    Blocking file I/O: call it from a thread (or before the event loop starts).
    """
    if config.secrets_key:
        return config.secrets_key
    return secret_in_data_dir(config, SECRETS_KEY_FILE, new_secrets_key)
