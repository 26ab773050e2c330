"""The events component in the application: the bus, and webhook delivery in the
background (owned by a cleanup context).

Other components publish with ``request.app[EVENT_BUS].publish(Event(...))`` or keep a
reference to the bus they get at build time.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from functools import partial

from aiohttp import web

from common.cancellation import cancel_and_wait
from common.logging import get_logger
from controlplane.config import ControlPlaneConfig
from controlplane.db.engine import Database
from controlplane.events.bus import EventBus
from controlplane.events.mail_notifications import MailNotifier
from controlplane.events.owner_webhooks import DatabaseOwnerEndpoints
from controlplane.events.seed_rollouts import SeedRollouts
from controlplane.events.webhooks import (
    AiohttpWebhookTransport,
    RetryPolicy,
    WebhookDispatcher,
    WebhookEndpoint,
    owner_webhook_policy,
)
from controlplane.ingress.table import app_url
from controlplane.state import EVENT_BUS, MAIL_NOTIFIER, MAIL_OUTBOX, OWNER_WEBHOOKS, WEBHOOKS

log = get_logger(__name__)

_TRANSPORTS = web.AppKey("webhook_transports", tuple[AiohttpWebhookTransport, ...])


def install_events(
    app: web.Application, config: ControlPlaneConfig, database: Database
) -> EventBus:
    """Put the bus, the webhook dispatcher and (if enabled) the mail notifier on `app`
    (call after MAIL_OUTBOX is set and the storage and mail outbox contexts are
    registered, so that delivery stops before either does); returns the bus."""
    bus = EventBus()
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
    app[WEBHOOKS] = WebhookDispatcher(
        bus,
        endpoints,
        transport,
        owner_endpoints=owners,
        owner_transport=owner_transport,
        retry=RetryPolicy(max_attempts=config.webhook_max_attempts),
        derive=SeedRollouts(config.domain_suffix, partial(app_url, config)).derive,
    )
    app.cleanup_ctx.append(_deliver_webhooks)
    if config.email_notifications:
        app[MAIL_NOTIFIER] = MailNotifier(bus, app[MAIL_OUTBOX], database)
        app.cleanup_ctx.append(_mail_notifications)
    return bus


async def _deliver_webhooks(app: web.Application) -> AsyncIterator[None]:
    dispatcher = app[WEBHOOKS]
    for endpoint in dispatcher.endpoints:
        if not endpoint.secret:
            log.warning("webhook_unsigned", url=endpoint.log_url, hint="set WEBHOOK_SECRET")
    delivery = asyncio.create_task(dispatcher.run(), name="webhooks")
    try:
        yield
    finally:
        await cancel_and_wait(delivery)
        for transport in app[_TRANSPORTS]:
            await transport.close()
        app[EVENT_BUS].close()


async def _mail_notifications(app: web.Application) -> AsyncIterator[None]:
    notifier = asyncio.create_task(app[MAIL_NOTIFIER].run(), name="mail-notifications")
    try:
        yield
    finally:
        await cancel_and_wait(notifier)
