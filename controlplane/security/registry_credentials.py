"""Deployments' registry passwords at rest: sealed with the control plane's one
secrets box (:mod:`controlplane.security.secrets`) before they reach the database,
opened only to build the spec of the node that pulls."""

from __future__ import annotations

from controlplane.security.secrets import SecretBox

#: Bound as associated data: a registry password cannot be opened as any other secret.
PURPOSE = "registry_password"


class RegistryCredentials:
    """The seal/open of registry passwords with the app's one :class:`SecretBox`
    (usable once the box has its key, at startup)."""

    def __init__(self, box: SecretBox) -> None:
        self._box = box

    def seal(self, password: str) -> str:
        """The sealed form stored in `deployments.registry_password_sealed`."""
        return self._box.seal(password, PURPOSE)

    def open(self, sealed: str) -> str:
        """The password; SecretUnreadable when sealed with another key."""
        return self._box.open(sealed, PURPOSE)
