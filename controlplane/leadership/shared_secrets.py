"""The secrets every control plane of a database must share, checked at startup.

On PostgreSQL (several control planes) the JWT secret and the secrets key must come
from configuration: one generated into a data directory would differ per machine.
The first control plane to start stores a keyed fingerprint of each (HMAC-SHA256 of a
constant under the secret: it proves equality without revealing the secret) in the
`cluster` row; every later one compares its own and refuses to start, naming the
secret, when they differ.
"""

from __future__ import annotations

import hashlib
import hmac

from sqlalchemy import update
from sqlmodel import col, select

from controlplane.config import ControlPlaneConfig
from controlplane.db.engine import Database
from controlplane.db.tables import Cluster
from controlplane.db.tables.cluster import CLUSTER_ROW_ID

FINGERPRINT_MESSAGE = b"encedeus shared secret fingerprint v1"


class SharedSecretsRefused(RuntimeError):
    """The configuration cannot serve this database: the message says what to fix."""


def fingerprint(secret: str) -> str:
    """HMAC-SHA256 of a constant under `secret`, hex."""
    return hmac.new(secret.encode(), FINGERPRINT_MESSAGE, hashlib.sha256).hexdigest()


def require_configured_secrets(config: ControlPlaneConfig) -> None:
    """On PostgreSQL: SharedSecretsRefused unless both shared secrets are configured."""
    if not config.resolved_database_url().startswith("postgresql"):
        return
    missing = [
        f"{name} ({variable})"
        for name, value, variable in (
            ("jwt_secret", config.jwt_secret, "JWT_SECRET"),
            ("secrets_key", config.secrets_key, "ENCEDEUS_SECRETS_KEY"),
        )
        if not value
    ]
    if missing:
        raise SharedSecretsRefused(
            "on PostgreSQL every control plane must share its secrets, so they come from"
            f" configuration, not the data directory: set {' and '.join(missing)}"
        )


async def check_shared_secrets(database: Database, jwt_secret: str, secrets_key: str) -> None:
    """Store the fingerprints on first start; SharedSecretsRefused naming each secret
    that differs from the one the database was set up with."""
    mine = {
        "jwt_secret_fingerprint": fingerprint(jwt_secret),
        "secrets_key_fingerprint": fingerprint(secrets_key),
    }
    names = {"jwt_secret_fingerprint": "jwt_secret", "secrets_key_fingerprint": "secrets_key"}
    async with database.transaction() as session:
        row = (
            await session.exec(
                select(Cluster).where(col(Cluster.id) == CLUSTER_ROW_ID).with_for_update()
            )
        ).one()
        stored = {column: getattr(row, column) for column in mine}
        differ = [
            names[column]
            for column, value in stored.items()
            if value is not None and not hmac.compare_digest(value, mine[column])
        ]
        if differ:
            raise SharedSecretsRefused(
                f"this control plane's {' and '.join(differ)} differ from those the database"
                " was set up with: every control plane of a database must use the same ones"
            )
        unset = {column: mine[column] for column, value in stored.items() if value is None}
        if unset:
            await session.exec(
                update(Cluster).where(col(Cluster.id) == CLUSTER_ROW_ID).values(**unset)
            )
