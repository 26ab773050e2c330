"""Nodes, deployments and their replicas: the desired state the reconciler converges.

A replica's id is its container's identity on a node (label ``encedeus.replica``);
its `volume_id` is its slot's data, the same for every replica of the slot;
`replicas.node_id` is the single source of truth for where it should run, so a copy
found anywhere else is stale and removed.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, Index, UniqueConstraint, Uuid
from sqlmodel import Field, SQLModel

from controlplane.db.types import UtcDateTime, new_id, utcnow


def _ts(*, nullable: bool = False) -> Column[datetime]:
    return Column(UtcDateTime(), nullable=nullable)


def _json(*, nullable: bool = False) -> Column[Any]:
    return Column(JSON(), nullable=nullable)


def _own_id(context: Any) -> Any:
    """A replica's volume id when none is given: the replica's own id."""
    return context.get_current_parameters()["id"]


def _big(*, default: int = 0) -> Column[int]:
    return Column(BigInteger(), nullable=False, default=default)


class Node(SQLModel, table=True):
    """A host running Skyhook. `status` is pending (not enrolled yet), ready or down;
    `draining` is separate so a draining node keeps its liveness.

    `secret` is kept in the clear because it is a key, not a password: it signs the
    console tokens the agent verifies and authenticates the gRPC calls to the agent.
    The one-time join token is stored only as a hash and cleared once used.
    """

    __tablename__ = "nodes"

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    name: str = Field(max_length=100, unique=True, index=True)
    status: str = Field(default="pending", max_length=16)
    draining: bool = False
    join_token_hash: str | None = Field(default=None, max_length=64, unique=True, index=True)
    secret: str | None = Field(default=None, max_length=128)
    grpc_address: str = Field(default="", max_length=255)
    http_address: str = Field(default="", max_length=255)
    sftp_address: str = Field(default="", max_length=255)
    fingerprint: dict[str, Any] = Field(default_factory=dict, sa_column=_json())
    labels: dict[str, str] = Field(default_factory=dict, sa_column=_json())
    host_stats: dict[str, Any] = Field(default_factory=dict, sa_column=_json())
    port_range_start: int = 30000
    port_range_end: int = 30999
    cpu_millis: int = 0
    memory_bytes: int = Field(default=0, sa_column=_big())
    # Allocatable disk for volumes with a limit (the agent's report; 0: none reported).
    disk_bytes: int = Field(default=0, sa_column=_big())
    created_at: datetime = Field(default_factory=utcnow, sa_column=_ts())
    enrolled_at: datetime | None = Field(default=None, sa_column=_ts(nullable=True))
    last_seen: datetime | None = Field(default=None, sa_column=_ts(nullable=True))


class Deployment(SQLModel, table=True):
    """A long-running app of one owner. `generation` grows on each change of the
    container spec; `running` is what the owner asked for (start/stop), `status` what
    the reconciler last derived (pending, running, updating, stopped, failed).
    `app_name` is unique across the installation: it is the app's hostname label
    (`<app_name>.<suffix>`), held by exactly one deployment of one account."""

    __tablename__ = "deployments"
    # The older per-account constraint stays (implied by the global index): dropping it
    # would make SQLite rebuild the table, and the rebuild's DROP cascades to replicas.
    __table_args__ = (
        UniqueConstraint("user_id", "app_name"),
        Index("ux_deployments_app_name", "app_name", unique=True),
    )

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    user_id: uuid.UUID = Field(foreign_key="users.id", ondelete="CASCADE", index=True)
    app_name: str = Field(max_length=63)
    image: str = Field(max_length=255)
    command: list[str] = Field(default_factory=list, sa_column=_json())
    ports: list[int] = Field(default_factory=list, sa_column=_json())
    # "tcp", "udp" or "tcp+udp" for each of `ports` (controlplane/port_protocols.py).
    port_protocols: list[str] = Field(default_factory=list, sa_column=_json())
    env_vars: dict[str, str] = Field(default_factory=dict, sa_column=_json())
    replicas: int = 1
    cpu: str = Field(default="100m", max_length=16)
    memory: str = Field(default="128Mi", max_length=16)
    cpu_millis: int = 100
    memory_bytes: int = Field(default=128 * 2**20, sa_column=_big())
    disk: str = Field(default="", max_length=16)  # "": no disk limit
    disk_bytes: int = Field(default=0, sa_column=_big())
    health_check: dict[str, Any] | None = Field(default=None, sa_column=_json(nullable=True))
    restart_policy: str = Field(default="always", max_length=16)
    stop_command: str = Field(default="", max_length=255)
    stop_signal: str = Field(default="", max_length=16)
    stop_timeout: int = 10
    run_as_root: bool = False
    # Made from a template: its id, and the resolved record (version, variables and
    # what the agent applies; controlplane/templates/resolve.py).
    template_id: str | None = Field(default=None, max_length=63, index=True)
    template: dict[str, Any] | None = Field(default=None, sa_column=_json(nullable=True))
    strategy: str = Field(default="spread", max_length=16)
    constraints: dict[str, str] = Field(default_factory=dict, sa_column=_json())
    running: bool = True
    run_since: datetime = Field(default_factory=utcnow, sa_column=_ts())
    generation: int = 1
    status: str = Field(default="pending", max_length=16, index=True)
    error_message: str | None = Field(default=None, max_length=1000)
    created_at: datetime = Field(default_factory=utcnow, sa_column=_ts())
    updated_at: datetime = Field(default_factory=utcnow, sa_column=_ts())
    deployed_at: datetime | None = Field(default=None, sa_column=_ts(nullable=True))
    # Images: when the agent pulls, with whose credentials (the password sealed by
    # controlplane.security.secrets, never in the clear), and the digest the tag
    # resolved to for generation `image_digest_generation` (pinned for every node).
    pull_policy: str = Field(default="if_not_present", max_length=16)
    registry_username: str | None = Field(default=None, max_length=255)
    registry_password_sealed: str | None = Field(default=None, max_length=8192)
    registry_server: str = Field(default="", max_length=255)
    image_digest: str = Field(default="", max_length=512)
    image_digest_generation: int = 0
    error_code: str | None = Field(default=None, max_length=64)
    # The container port the ingress routes to; None: the first of `ports`.
    http_port: int | None = None
    # When its node is lost (docs/stateful.md): "wait" for it (and with
    # `move_after_seconds`, move after that long) or "move" at once.
    on_node_loss: str = Field(default="move", max_length=8)
    move_after_seconds: int | None = None


class Replica(SQLModel, table=True):
    """Slot `ordinal` of a deployment, assigned to `node_id` (None: not placed yet).

    Crash bookkeeping (`restart_count`, `crash_streak`, `handled_exit_ms`,
    `backoff_until`, `start_issued_at`) lets a restarted control plane continue the
    back-off where it stopped instead of counting one exit twice.
    """

    __tablename__ = "replicas"
    __table_args__ = (UniqueConstraint("deployment_id", "ordinal"),)

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    deployment_id: uuid.UUID = Field(foreign_key="deployments.id", ondelete="CASCADE", index=True)
    ordinal: int
    # The slot's data (directory, SFTP login): carried over when the slot moves to a
    # new replica, so it outlives every replica of the slot (docs/stateful.md). Not
    # given: the replica's own id (a new slot), filled in at INSERT.
    volume_id: uuid.UUID | None = Field(
        default=None,
        sa_column=Column(Uuid(), nullable=False, index=True, default=_own_id),
    )
    node_id: uuid.UUID | None = Field(
        default=None, foreign_key="nodes.id", ondelete="SET NULL", index=True
    )
    host_ports: list[int] = Field(default_factory=list, sa_column=_json())
    restart_count: int = 0
    crash_streak: int = 0
    handled_exit_ms: int = Field(default=0, sa_column=_big())
    backoff_until: datetime | None = Field(default=None, sa_column=_ts(nullable=True))
    start_issued_at: datetime | None = Field(default=None, sa_column=_ts(nullable=True))
    last_error: str | None = Field(default=None, max_length=1000)
    created_at: datetime = Field(default_factory=utcnow, sa_column=_ts())
    # A replica placed after its slot's node was lost: "pending", then "restoring" or
    # "restore_failed" (its container stays stopped) until its latest backup was
    # restored ("restored") or there was none ("empty"); `restore_note` says which
    # backup and how old, or why none (controlplane/reconciler/node_loss.py).
    restore_state: str = Field(default="", max_length=16)
    restore_note: str | None = Field(default=None, max_length=1000)
    # A move to another live node under way or failed (controlplane/volumes/moves.py):
    # target_node_id, phase (stopping, transferring, starting, failed), bytes_sent,
    # volume_bytes, updated_at (epoch seconds), error. None: no move.
    transfer: dict[str, Any] | None = Field(default=None, sa_column=_json(nullable=True))

    @property
    def slot_volume(self) -> uuid.UUID:
        """The slot's volume id, also before the row is written."""
        return self.volume_id or self.id
