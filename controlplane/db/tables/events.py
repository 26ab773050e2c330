"""The durable event log (`events`, the transactional outbox), and the webhook
delivery bookkeeping that follows it (`webhook_cursors`, `webhook_deliveries`).

`events.id` is the cursor clients resume from: readers read only up to the settled
horizon (:mod:`controlplane.events.horizon`), so ids become visible in increasing order.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, Integer
from sqlmodel import Field, SQLModel

from controlplane.db.types import UtcDateTime, utcnow

# SQLite only autoincrements a plain INTEGER PRIMARY KEY; AUTOINCREMENT (table
# argument) keeps ids from being reused once the newest rows were pruned.
CURSOR_TYPE = BigInteger().with_variant(Integer(), "sqlite")


class EventRecord(SQLModel, table=True):
    """One published event; `id` is its cursor."""

    __tablename__ = "events"
    __table_args__ = {"sqlite_autoincrement": True}

    id: int | None = Field(
        default=None, sa_column=Column(CURSOR_TYPE, primary_key=True, autoincrement=True)
    )
    type: str = Field(max_length=64)
    owner_id: str | None = Field(default=None, max_length=36, index=True)
    deployment_id: str | None = Field(default=None, max_length=36)
    task_id: str | None = Field(default=None, max_length=36)
    node_id: str | None = Field(default=None, max_length=36)
    data: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UtcDateTime(), nullable=False)
    )


class WebhookCursor(SQLModel, table=True):
    """How far one webhook receiver has been served: every event up to `cursor` is
    delivered (or dead). `endpoint` is `operator` (WEBHOOK_URL) or a webhook's id."""

    __tablename__ = "webhook_cursors"

    endpoint: str = Field(primary_key=True, max_length=64)
    cursor: int = Field(sa_column=Column(CURSOR_TYPE, nullable=False))


class WebhookDelivery(SQLModel, table=True):
    """One event on its way to one receiver: attempts, the last answer, the outcome
    (`pending`, `delivered`, `failed` = refused without retry, `dead`)."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = {"sqlite_autoincrement": True}

    id: int | None = Field(
        default=None, sa_column=Column(CURSOR_TYPE, primary_key=True, autoincrement=True)
    )
    endpoint: str = Field(max_length=64, index=True)
    event_id: int = Field(sa_column=Column(CURSOR_TYPE, nullable=False))
    # The X-Encedeus-Event-Id header: the cursor, or `<cursor>.<type>` for seed 004's
    # rollout events derived from that event.
    event_key: str = Field(max_length=100)
    event_type: str = Field(max_length=64)
    body: str
    status: str = Field(default="pending", max_length=16)
    attempts: int = 0
    last_status_code: int | None = None
    last_error: str = Field(default="", max_length=500)
    first_attempt_at: datetime | None = Field(
        default=None, sa_column=Column(UtcDateTime(), nullable=True)
    )
    last_attempt_at: datetime | None = Field(
        default=None, sa_column=Column(UtcDateTime(), nullable=True)
    )
    next_attempt_at: datetime | None = Field(
        default=None, sa_column=Column(UtcDateTime(), nullable=True)
    )
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UtcDateTime(), nullable=False)
    )


class MailMessage(SQLModel, table=True):
    """One e-mail in the durable outbox (`pending`, `sent`, `dead`)."""

    __tablename__ = "mail_outbox"
    __table_args__ = {"sqlite_autoincrement": True}

    id: int | None = Field(
        default=None, sa_column=Column(CURSOR_TYPE, primary_key=True, autoincrement=True)
    )
    to: str = Field(max_length=320)
    subject: str = Field(max_length=500)
    body: str
    status: str = Field(default="pending", max_length=16, index=True)
    attempts: int = 0
    last_error: str = Field(default="", max_length=500)
    next_attempt_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UtcDateTime(), nullable=False)
    )
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UtcDateTime(), nullable=False)
    )
