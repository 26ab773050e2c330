"""Secrets at rest (registry credentials, ...): one key, one format, shared by every
control plane (DESIGN.md "Shared mechanisms").

Sealed values are Fernet tokens (AES-128-CBC + HMAC-SHA256, with a timestamp) from
`cryptography`: tampering or a wrong key is detected when opening. The key comes from
`secrets_key` in the config (a urlsafe-base64 Fernet key), or is generated once into
`<data_dir>/secrets_key` (0600). Several control planes sharing a database must share
the key: set it in the config.
"""

from __future__ import annotations

import os
from typing import Protocol

from cryptography.fernet import Fernet, InvalidToken

SECRETS_KEY_FILE = "secrets_key"


class SecretsConfig(Protocol):
    """What :func:`load_or_create_secrets_key` reads from the control plane's config."""

    @property
    def secrets_key(self) -> str: ...

    @property
    def data_dir(self) -> os.PathLike[str]: ...


class SecretOpenFailed(ValueError):
    """The token was not sealed with this key, or was altered."""


class SecretBox:
    """Seals and opens short strings with one key. Safe to share between tasks."""

    def __init__(self, key: bytes) -> None:
        self._fernet = Fernet(key)

    def seal(self, plaintext: str) -> str:
        """An opaque token (ASCII) for `plaintext`."""
        return self._fernet.encrypt(plaintext.encode("utf-8")).decode("ascii")

    def open(self, token: str) -> str:
        """The plaintext of `token`; SecretOpenFailed when the key or token is wrong."""
        try:
            return self._fernet.decrypt(token.encode("ascii")).decode("utf-8")
        except (InvalidToken, UnicodeError) as exc:
            raise SecretOpenFailed("the sealed secret cannot be opened with this key") from exc


def load_or_create_secrets_key(config: SecretsConfig) -> bytes:
    """The configured key, or the one kept in the data directory (generated once,
    O_EXCL so that two processes starting at once agree). Blocking file I/O."""
    if config.secrets_key:
        return config.secrets_key.encode("ascii")
    directory = os.fspath(config.data_dir)
    path = os.path.join(directory, SECRETS_KEY_FILE)
    try:
        with open(path, "rb") as existing:
            key = existing.read().strip()
        if key:
            return key
    except FileNotFoundError:
        pass
    os.makedirs(directory, mode=0o700, exist_ok=True)
    key = Fernet.generate_key()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        with open(path, "rb") as existing:
            return existing.read().strip()
    with os.fdopen(fd, "wb") as handle:
        handle.write(key + b"\n")
    return key
