"""Deployments' registry passwords at rest: sealed with the control plane's one
secrets box (:mod:`controlplane.security.secrets`) before they reach the database,
opened only to build the spec of the node that pulls."""

from __future__ import annotations

import uuid

from controlplane.security.secrets import SecretBox, open_for_row, seal_for_row

#: Bound as associated data with the deployment's id: a registry password cannot be
#: opened as any other secret, nor as another deployment's.
PURPOSE = "registry_password"


class RegistryCredentials:
    """The seal/open of registry passwords with the app's one :class:`SecretBox`
    (usable once the box has its key, at startup)."""

    def __init__(self, box: SecretBox) -> None:
        self._box = box

    def seal(self, password: str, deployment_id: uuid.UUID) -> str:
        """The sealed form stored in `deployments.registry_password_sealed` of
        deployment `deployment_id`."""
        return seal_for_row(self._box, password, PURPOSE, deployment_id)

    def open(self, sealed: str, deployment_id: uuid.UUID) -> str:
        """The password of deployment `deployment_id`; SecretUnreadable when sealed
        with another key or for another deployment."""
        return open_for_row(self._box, sealed, PURPOSE, deployment_id)
