"""/v1/webhooks: an account's own webhook receivers (its events only, signed with a
secret shown once). The global WEBHOOK_URL is configuration, not this resource."""

from __future__ import annotations

import secrets
import uuid
from datetime import datetime

from aiohttp import web
from pydantic import BaseModel, Field
from sqlmodel import col, select

from common.outbound_policy import OutboundRefused, checked_url
from controlplane.api.context import current_user, database, path_uuid, settings
from controlplane.api.errors import Conflict, NotFound, Unprocessable
from controlplane.api.owned_rows import add_own, delete_own, page_of_own
from controlplane.api.pagination import PageQuery, Pagination, fetch_page
from controlplane.api.schemas import MessageResponse, Request
from controlplane.db.tables.events import WebhookCursor, WebhookDelivery
from controlplane.db.tables.webhooks import Webhook
from controlplane.events.outbox import OPERATOR
from controlplane.events.webhooks import owner_webhook_policy
from controlplane.state import EVENT_FEED, OWNER_WEBHOOKS, WEBHOOK_OUTBOX

MAX_WEBHOOKS_PER_ACCOUNT = 10


class CreateWebhook(Request):
    """Where to POST the caller's events."""

    url: str = Field(min_length=8, max_length=2000)
    description: str = Field(default="", max_length=500)


class WebhookInfo(BaseModel):
    """A webhook as listed (never its secret)."""

    id: uuid.UUID
    url: str
    description: str
    created_at: datetime


class CreatedWebhook(WebhookInfo):
    """The new webhook; `secret` (the HMAC key of X-Encedeus-Signature) is shown once."""

    secret: str


class WebhookList(BaseModel):
    """A page of the caller's webhooks."""

    webhooks: list[WebhookInfo]
    pagination: Pagination


async def create_webhook(request: web.Request, body: CreateWebhook) -> CreatedWebhook:
    """Register a receiver of the caller's events (http or https, public addresses
    unless the control plane allows private ones)."""
    try:
        checked_url(body.url, owner_webhook_policy(settings(request)))
    except OutboundRefused as exc:
        raise Unprocessable(str(exc), code="url_refused") from exc
    owner = current_user(request).id
    hook = Webhook(
        user_id=owner,
        url=body.url,
        secret="whsec_" + secrets.token_urlsafe(24),
        description=body.description,
    )
    # Read before the webhook exists: it receives every event from its creation on.
    # Its cursor is written with it: the outbox, seeing a webhook without one, would
    # start it from a later event (and the two inserts would collide).
    start = await request.app[EVENT_FEED].store.start()
    cursor = WebhookCursor(endpoint=str(hook.id), cursor=start)
    await add_own(request, hook, MAX_WEBHOOKS_PER_ACCOUNT, "webhooks", along=[cursor])
    request.app[OWNER_WEBHOOKS].forget(str(owner))
    request.app[WEBHOOK_OUTBOX].poke()
    return CreatedWebhook(**WebhookInfo.model_validate(hook, from_attributes=True).model_dump(),
                          secret=hook.secret)  # fmt: skip


async def list_webhooks(request: web.Request, query: PageQuery) -> WebhookList:
    """The caller's webhooks, oldest first."""
    rows, pagination = await page_of_own(request, Webhook, query)
    items = [WebhookInfo.model_validate(row, from_attributes=True) for row in rows]
    return WebhookList(webhooks=items, pagination=pagination)


async def delete_webhook(request: web.Request) -> MessageResponse:
    """Remove one of the caller's webhooks."""
    missing = NotFound("webhook not found", code="webhook_not_found")
    owner = await delete_own(request, Webhook, missing)
    request.app[OWNER_WEBHOOKS].forget(str(owner))
    request.app[WEBHOOK_OUTBOX].poke()
    return MessageResponse(message="Webhook deleted successfully")


class DeliveryInfo(BaseModel):
    """One event on its way to a webhook: attempts, the last answer, the outcome."""

    id: int
    event_id: int = Field(description="the event's cursor")
    event_key: str = Field(description="the X-Encedeus-Event-Id header it is sent with")
    event_type: str
    status: str = Field(description="pending, delivered, failed (not retried) or dead")
    attempts: int
    last_status_code: int | None = Field(description="the last HTTP answer (0: refused)")
    last_error: str
    first_attempt_at: datetime | None
    last_attempt_at: datetime | None
    next_attempt_at: datetime | None
    created_at: datetime


class DeliveryList(BaseModel):
    """A page of a webhook's deliveries, newest first."""

    deliveries: list[DeliveryInfo]
    pagination: Pagination


async def _endpoint_key(request: web.Request) -> str:
    """The outbox key of the webhook in the path: one of the caller's, or `operator`
    (the WEBHOOK_URL of the configuration) for administrators."""
    missing = NotFound("webhook not found", code="webhook_not_found")
    user = current_user(request)
    if request.match_info["id"] == OPERATOR:
        if not user.is_admin:
            raise missing
        return OPERATOR
    async with database(request).session() as session:
        hook = await session.get(Webhook, path_uuid(request))
    if hook is None or hook.user_id != user.id:
        raise missing
    return str(hook.id)


async def list_deliveries(request: web.Request, query: PageQuery) -> DeliveryList:
    """The webhook's deliveries with their attempts and answers, newest first."""
    key = await _endpoint_key(request)
    statement = (
        select(WebhookDelivery)
        .where(col(WebhookDelivery.endpoint) == key)
        .order_by(col(WebhookDelivery.id).desc())
    )
    async with database(request).session() as session:
        rows, pagination = await fetch_page(session, statement, query)
    items = [DeliveryInfo.model_validate(row, from_attributes=True) for row in rows]
    return DeliveryList(deliveries=items, pagination=pagination)


async def replay_delivery(request: web.Request) -> DeliveryInfo:
    """Send a dead or failed delivery again (it goes before the webhook's other pending
    deliveries); 409 `delivery_not_finished` for one still pending or delivered."""
    key = await _endpoint_key(request)
    try:
        delivery_id = int(request.match_info["delivery_id"])
    except ValueError:
        raise NotFound("delivery not found", code="delivery_not_found") from None
    async with database(request).transaction() as session:
        row = await session.get(WebhookDelivery, delivery_id)
        if row is None or row.endpoint != key:
            raise NotFound("delivery not found", code="delivery_not_found")
        if row.status not in ("dead", "failed"):
            raise Conflict(
                f"only a dead or failed delivery can be replayed; this one is {row.status}",
                code="delivery_not_finished",
            )
        row.status = "pending"
        row.first_attempt_at = None
        row.next_attempt_at = None
    request.app[WEBHOOK_OUTBOX].replayed(key)
    return DeliveryInfo.model_validate(row, from_attributes=True)
