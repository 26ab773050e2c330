"""Deployments' registry passwords at rest: sealed with the control plane's one
secrets key (:mod:`controlplane.security.secrets`) before they reach the database,
opened only to build the spec of the node that pulls."""

from __future__ import annotations

from controlplane.security.secrets import SecretBox


class RegistryCredentials:
    """The seal/open of registry passwords; usable once :meth:`load` gave it the key
    (at startup, after the data directory is ready)."""

    def __init__(self) -> None:
        self._box: SecretBox | None = None

    def load(self, key: bytes) -> None:
        self._box = SecretBox(key)

    def _loaded(self) -> SecretBox:
        if self._box is None:
            raise RuntimeError("the secrets key is not loaded yet")
        return self._box

    def seal(self, password: str) -> str:
        """The sealed form stored in `deployments.registry_password_sealed`."""
        return self._loaded().seal(password)

    def open(self, sealed: str) -> str:
        """The password; SecretOpenFailed when sealed with another key."""
        return self._loaded().open(sealed)
