"""The events component in the application: the bus and the feed that follows the
log (every process, owned by a cleanup context), and the leader duties: webhook
delivery, mail notifications and event pruning.

Other components publish with ``request.app[EVENT_BUS].publish(Event(...))`` or keep a
reference to the bus they get at build time.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from functools import partial

from aiohttp import web

from common.cancellation import cancel_and_wait
from common.logging import get_logger
from controlplane.config import ControlPlaneConfig
from controlplane.db.engine import Database
from controlplane.db.types import utcnow
from controlplane.events.bus import EventBus
from controlplane.events.feed import EventFeed
from controlplane.events.mail_notifications import MAIL_CURSOR, MailNotifier
from controlplane.events.outbox import OutboxPolicy, WebhookOutbox, prune_finished
from controlplane.events.owner_webhooks import DatabaseOwnerEndpoints
from controlplane.events.seed_rollouts import SeedRollouts
from controlplane.events.store import Retention
from controlplane.events.webhooks import (
    AiohttpWebhookTransport,
    RetryPolicy,
    WebhookDispatcher,
    WebhookEndpoint,
    owner_webhook_policy,
)
from controlplane.ingress.table import app_url
from controlplane.leadership import Duty
from controlplane.state import (
    EVENT_BUS,
    EVENT_FEED,
    LEADERSHIP,
    MAIL_NOTIFIER,
    MAIL_OUTBOX,
    NOTIFIER,
    OWNER_WEBHOOKS,
    WEBHOOK_OUTBOX,
    WEBHOOKS,
)

log = get_logger(__name__)

PRUNE_INTERVAL = 60.0
_TRANSPORTS = web.AppKey("webhook_transports", tuple[AiohttpWebhookTransport, ...])


def install_events(
    app: web.Application, config: ControlPlaneConfig, database: Database
) -> EventBus:
    """Put the bus, the webhook dispatcher and (if enabled) the mail notifier on `app`
    and register their leader duties — webhook delivery, mail notifications, event
    pruning — with ``app[LEADERSHIP]`` (call after MAIL_OUTBOX and LEADERSHIP are set
    and the storage and mail outbox contexts are registered, so that the feed stops
    before either does); returns the bus."""
    bus = EventBus()
    feed = app[EVENT_FEED] = EventFeed(database, bus, app[NOTIFIER])
    app.cleanup_ctx.append(_follow_event_log)
    endpoints = []
    if config.webhook_url:
        endpoints.append(WebhookEndpoint(config.webhook_url, config.webhook_secret))
    transport = AiohttpWebhookTransport()
    # Per-account URLs are user input: the same address rules as task URL inputs.
    owner_transport = AiohttpWebhookTransport(owner_webhook_policy(config))
    owners = DatabaseOwnerEndpoints(database)
    app[EVENT_BUS] = bus
    app[OWNER_WEBHOOKS] = owners
    app[_TRANSPORTS] = (transport, owner_transport)
    # The dispatcher signs and sends; the outbox decides what and when, from the log.
    app[WEBHOOKS] = sender = WebhookDispatcher(
        bus, endpoints, transport, owner_endpoints=owners, owner_transport=owner_transport
    )
    followers = frozenset({MAIL_CURSOR}) if config.email_notifications else frozenset()
    app[WEBHOOK_OUTBOX] = outbox = WebhookOutbox(
        feed.store,
        feed.wakeup,
        sender,
        endpoints[0] if endpoints else None,
        OutboxPolicy(
            dead_after=config.webhook_dead_after_seconds,
            retry=RetryPolicy(cap=config.webhook_retry_max_delay_seconds),
        ),
        derive=lambda: SeedRollouts(config.domain_suffix, partial(app_url, config)).derive,
        followers=followers,
    )
    for endpoint in endpoints:
        if not endpoint.secret:
            log.warning("webhook_unsigned", url=endpoint.log_url, hint="set WEBHOOK_SECRET")
    leadership = app[LEADERSHIP]
    leadership.add_duty(Duty("webhook-delivery", outbox.run))
    retention = Retention(config.event_retention_seconds)
    leadership.add_duty(Duty("event-pruning", partial(_prune_forever, feed, retention)))
    if config.email_notifications:
        app[MAIL_NOTIFIER] = notifier = MailNotifier(feed.store, feed.wakeup, app[MAIL_OUTBOX])
        leadership.add_duty(Duty("mail-notifications", notifier.run))
    return bus


async def _follow_event_log(app: web.Application) -> AsyncIterator[None]:
    feed = app[EVENT_FEED]
    await feed.start()
    loops = asyncio.create_task(feed.run(), name="event-log")
    try:
        yield
    finally:
        await cancel_and_wait(loops)
        await feed.drain()
        for transport in app[_TRANSPORTS]:
            await transport.close()
        app[EVENT_BUS].close()


async def _prune_forever(feed: EventFeed, retention: Retention) -> None:
    while True:
        try:
            removed = await feed.store.prune(retention)
            cutoff = utcnow() - timedelta(seconds=retention.seconds)
            removed += await prune_finished(feed.store.database, cutoff)
            if removed:
                log.info("events_pruned", count=removed)
        except Exception as exc:
            log.warning("event_prune_failed", error=str(exc))
        await asyncio.sleep(PRUNE_INTERVAL)
