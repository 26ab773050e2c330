"""Notifications: the WebSocket (`/v1/ws/notifications`, `/v1/ws/health`) and seed
004's testing endpoints (`/v1/notifications/test`, `/v1/notifications/stats`)."""

from __future__ import annotations

from aiohttp import WSMsgType, web
from pydantic import BaseModel

from controlplane.api.context import authenticator, current_user, database, settings
from controlplane.api.schemas import MessageResponse
from controlplane.events.bus import Event, EventType
from controlplane.events.notifications import SocketLimits, serve_notifications, subscriber_name
from controlplane.state import EVENT_BUS, EVENT_FEED, WEBHOOKS


class WebhookStats(BaseModel):
    """Outcomes of webhook deliveries since start."""

    endpoints: int
    delivered: int
    failed: int
    dropped: int


class NotificationStats(BaseModel):
    """The notification system's counters. `subscribers` counts the caller's own open
    notification sockets (every subscriber for admins); the platform-wide counters
    are for admins only (null for everyone else)."""

    subscribers: int
    published: int | None
    webhooks: WebhookStats | None


async def notifications_socket(request: web.Request) -> web.StreamResponse:
    """WebSocket of events about the caller's deployments and tasks (and nodes, for
    admins). Authenticate with a Bearer header or a first `authenticate` message.
    Capped per account (sockets) and per socket (messages a second)."""
    config = settings(request)
    limits = SocketLimits(
        max_sockets_per_account=config.notification_sockets_per_account,
        max_messages_per_second=config.notification_messages_per_second,
    )
    return await serve_notifications(
        request,
        request.app[EVENT_BUS],
        authenticator(request).authenticate,
        limits,
        request.app[EVENT_FEED].store,
    )


async def health_socket(request: web.Request) -> web.StreamResponse:
    """A WebSocket that says it is healthy and answers `ping` with `pong`."""
    socket = web.WebSocketResponse(heartbeat=30.0, max_msg_size=4096)
    await socket.prepare(request)
    await socket.send_json({"type": "health", "status": "healthy"})
    async for message in socket:
        if message.type == WSMsgType.TEXT and "ping" in message.data:
            await socket.send_json({"type": "pong"})
    return socket


async def send_test_notification(request: web.Request) -> MessageResponse:
    """Publish a `test` event to the caller's own notification channels."""
    user = current_user(request)
    event = Event(EventType.TEST, owner_id=str(user.id), data={"message": "test notification"})
    async with database(request).transaction() as session:
        await request.app[EVENT_BUS].record(session, event)
    return MessageResponse(message="Test notification sent")


async def notification_stats(request: web.Request) -> NotificationStats:
    """How many listeners are connected and what the bus and webhooks have done."""
    bus = request.app[EVENT_BUS]
    webhooks = request.app[WEBHOOKS]
    user = current_user(request)
    if not user.is_admin:
        own = bus.subscribers_named(subscriber_name(str(user.id)))
        return NotificationStats(subscribers=own, published=None, webhooks=None)
    return NotificationStats(
        subscribers=bus.subscriber_count,
        published=bus.published,
        webhooks=WebhookStats(
            endpoints=len(webhooks.endpoints),
            delivered=webhooks.delivered,
            failed=webhooks.failed,
            dropped=webhooks.dropped,
        ),
    )
