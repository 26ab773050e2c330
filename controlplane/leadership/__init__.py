"""Several control planes on one PostgreSQL: the leader lease and its fencing epoch,
the shared-secrets check, and the one-server lock of the embedded SQLite database."""

from controlplane.leadership.lease import (
    Duty,
    Leadership,
    LeadershipLost,
    PostgresLeadership,
    SingleProcessLeadership,
)

__all__ = [
    "Duty",
    "Leadership",
    "LeadershipLost",
    "PostgresLeadership",
    "SingleProcessLeadership",
]
