"""Webhook delivery: bus events POSTed as JSON, signed, retried, never blocking the API.

Every event on the bus becomes one delivery to each configured endpoint, and so does
every event a `derive` function makes of it (seed 004's rollout events, see
:mod:`controlplane.events.seed_rollouts`). The payload is seed 004's webhook shape
(``type``, the resource id, ``status``, ``timestamp``, ``user_id``, ``app_name``,
``url``) plus the event's ``data``.

Signature: ``X-Encedeus-Signature: sha256=<hex>`` where the hex digest is
HMAC-SHA256 with the endpoint's secret over ``<X-Encedeus-Timestamp>.<raw body>``;
the timestamp header is Unix seconds, so a receiver can refuse stale replays.

Delivery: a bounded queue (full → the newest delivery is dropped and counted) feeds a
few workers; a 2xx answer is success, anything else (or no answer) is retried with
exponential back-off up to ``max_attempts``. 4xx other than 408/429 are not retried,
nor is a delivery that the address policy refuses; a name that does not resolve is
an unanswered attempt like any other and is retried.

Endpoints: the global one(s) from the configuration get every event; accounts may
register their own (:class:`OwnerEndpoints`), which get only that account's events.
Both go through the guarded outbound client (:mod:`common.outbound`); per-account URLs
are user input and get the policy that refuses private addresses.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver

from common.logging import get_logger
from common.outbound import GuardedSession, OutboundError, OutboundPolicy, OutboundRefused
from controlplane.config import ControlPlaneConfig
from controlplane.events.bus import Event, EventBus

log = get_logger(__name__)

SIGNATURE_HEADER = "X-Encedeus-Signature"
TIMESTAMP_HEADER = "X-Encedeus-Timestamp"
EVENT_HEADER = "X-Encedeus-Event"
DELIVERY_HEADER = "X-Encedeus-Delivery"
#: The idempotency key: the same on every attempt and every duplicate of one event.
EVENT_ID_HEADER = "X-Encedeus-Event-Id"
REFUSED = 0  # pseudo status: the transport refused to send (never retried)


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The signature header value for `body` sent at `timestamp`."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + digest.hexdigest()


def verify(secret: str, timestamp: str, body: bytes, signature: str) -> bool:
    """True when `signature` is the correct one (constant-time comparison)."""
    return hmac.compare_digest(sign(secret, timestamp, body), signature)


def webhook_payload(event: Event) -> dict[str, Any]:
    """Seed 004's webhook payload for `event`."""
    data = dict(event.data)
    payload: dict[str, Any] = event.to_json()
    payload["user_id"] = event.owner_id
    for key in ("status", "app_name", "url"):
        if key in data:
            payload[key] = data[key]
    return payload


@dataclass(frozen=True, slots=True)
class WebhookEndpoint:
    """One receiver. `owner_id` None receives every event (the global WEBHOOK_URL);
    otherwise only that account's events, sent through the address-checked transport."""

    url: str
    secret: str = ""
    owner_id: str | None = None
    key: str = "operator"  # the outbox's name for it: "operator" or the webhook's id

    def wants(self, event: Event) -> bool:
        """Global endpoints get everything; per-user ones only their owner's events."""
        return self.owner_id is None or event.owner_id == self.owner_id

    @property
    def log_url(self) -> str:
        """The URL as logs show it: scheme and host only. Receivers such as chat
        services carry their secret in the path, and user info is a credential."""
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


@dataclass(slots=True)
class Delivery:
    """One payload on its way to one endpoint."""

    endpoint: WebhookEndpoint
    event_type: str
    body: bytes
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    attempts: int = 0
    event_id: str = ""


class WebhookTransport(Protocol):
    """Sends one HTTP POST; returns the status code. Raises OutboundRefused when the
    address policy forbids the URL (never retried) and OutboundFailed, OSError or
    TimeoutError when there is no answer (retried)."""

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> int: ...


class OwnerEndpoints(Protocol):
    """The webhooks an account registered (the real one reads the database)."""

    async def for_owner(self, owner_id: str) -> list[WebhookEndpoint]:
        """The account's endpoints (empty when none)."""
        ...


# The operator's own WEBHOOK_URL may well be on a private network, with basic auth.
OPERATOR_POLICY = OutboundPolicy(
    allow_private=True, allow_url_credentials=True, max_bytes=1024 * 1024, timeout_seconds=10.0
)


def owner_webhook_policy(config: ControlPlaneConfig) -> OutboundPolicy:
    """The address rules for per-account webhook URLs (user input) under `config`."""
    return OutboundPolicy(
        allow_private=config.webhook_allow_private,
        allowed_networks=config.outbound_allowed_networks,
        max_bytes=1024 * 1024,
        timeout_seconds=10.0,
    )


class AiohttpWebhookTransport:
    """The real transport: one guarded outbound session for the dispatcher's lifetime
    (every connection's address checked against `policy`; redirects never followed).
    `resolver` replaces the system resolver (tests)."""

    def __init__(
        self, policy: OutboundPolicy = OPERATOR_POLICY, resolver: AbstractResolver | None = None
    ) -> None:
        self._http = GuardedSession(policy, resolver)

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> int:
        return await self._http.post(url, body, headers)

    async def close(self) -> None:
        await self._http.close()


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential back-off: `base` seconds, doubled per attempt, capped at `cap`."""

    max_attempts: int = 6
    base: float = 1.0
    cap: float = 60.0

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based)."""
        return float(min(self.cap, self.base * (2 ** (attempt - 1))))


class WebhookDispatcher:
    """Subscribes to the bus and delivers every event to the matching endpoints.

    :meth:`run` is the background loop (owned by the app's cleanup context); stopping
    it cancels pending retries. ``delivered``/``failed``/``dropped`` count outcomes.
    """

    def __init__(
        self,
        bus: EventBus,
        endpoints: Sequence[WebhookEndpoint],
        transport: WebhookTransport,
        *,
        owner_endpoints: OwnerEndpoints | None = None,
        owner_transport: WebhookTransport | None = None,
        retry: RetryPolicy | None = None,
        queue_size: int = 1000,
        workers: int = 4,
        derive: Callable[[Event], Sequence[Event]] | None = None,
    ) -> None:
        self._bus = bus
        self._endpoints = list(endpoints)
        self._transport = transport
        self._owner_endpoints = owner_endpoints
        self._owner_transport = owner_transport or transport
        self._retry = retry or RetryPolicy()
        self._queue: asyncio.Queue[Delivery] = asyncio.Queue(maxsize=queue_size)
        self._workers = workers
        # Further events a bus event implies for webhooks (seed 004's rollout events).
        self._derive = derive
        self.delivered = 0
        self.failed = 0
        self.dropped = 0

    @property
    def endpoints(self) -> list[WebhookEndpoint]:
        """The receivers currently configured."""
        return list(self._endpoints)

    async def _targets(self, event: Event) -> list[WebhookEndpoint]:
        targets = [e for e in self._endpoints if e.wants(event)]
        if self._owner_endpoints is not None and event.owner_id is not None:
            try:
                targets += await self._owner_endpoints.for_owner(event.owner_id)
            except Exception:
                log.exception("webhook_endpoints_unavailable", owner_id=event.owner_id)
        return targets

    def enqueue(self, event: Event, targets: Sequence[WebhookEndpoint] | None = None) -> None:
        """Queue deliveries of `event` to `targets` (default: the global endpoints that
        want it); never blocks."""
        body = json.dumps(webhook_payload(event), separators=(",", ":")).encode()
        chosen = [e for e in self._endpoints if e.wants(event)] if targets is None else targets
        for endpoint in chosen:
            try:
                self._queue.put_nowait(Delivery(endpoint, event.type_name, body))
            except asyncio.QueueFull:
                self.dropped += 1
                log.warning("webhook_queue_full", url=endpoint.log_url, dropped=self.dropped)

    async def run(self) -> None:
        """Consume the bus and deliver until cancelled."""
        if not self._endpoints and self._owner_endpoints is None:
            return
        async with asyncio.TaskGroup() as group:
            for _ in range(self._workers):
                group.create_task(self._deliver_forever())
            async with self._bus.subscribe(name="webhooks", maxsize=1000) as events:
                async for event in events:
                    targets = await self._targets(event)
                    self.enqueue(event, targets)
                    for derived in self._derive(event) if self._derive else ():
                        self.enqueue(derived, targets)

    async def _deliver_forever(self) -> None:
        while True:
            delivery = await self._queue.get()
            await self.deliver(delivery)

    async def deliver(self, delivery: Delivery) -> bool:
        """Send `delivery`, retrying with back-off; True when a receiver accepted it."""
        while delivery.attempts < self._retry.max_attempts:
            delivery.attempts += 1
            status = await self.attempt(delivery)
            if status is not None and 200 <= status < 300:
                self.delivered += 1
                return True
            if status is not None and status < 500 and status not in (408, 429):
                break
            if delivery.attempts < self._retry.max_attempts:
                await asyncio.sleep(self._retry.delay(delivery.attempts))
        self.failed += 1
        log.warning(
            "webhook_delivery_failed", url=delivery.endpoint.log_url, attempts=delivery.attempts
        )
        return False

    async def attempt(self, delivery: Delivery) -> int | None:
        """One POST of `delivery`: the status, REFUSED, or None without an answer."""
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "encedeus-webhooks/1",
            TIMESTAMP_HEADER: timestamp,
            EVENT_HEADER: delivery.event_type,
            DELIVERY_HEADER: delivery.id,
        }
        if delivery.event_id:
            headers[EVENT_ID_HEADER] = delivery.event_id
        if delivery.endpoint.secret:
            headers[SIGNATURE_HEADER] = sign(delivery.endpoint.secret, timestamp, delivery.body)
        transport = self._transport if delivery.endpoint.owner_id is None else self._owner_transport
        try:
            return await transport.post(delivery.endpoint.url, delivery.body, headers)
        except OutboundRefused as exc:
            # The address policy refused the URL: retrying cannot help.
            log.warning("webhook_refused", url=delivery.endpoint.log_url, error=str(exc))
            return REFUSED
        except (OutboundError, OSError, TimeoutError) as exc:
            log.info("webhook_attempt_failed", url=delivery.endpoint.log_url, error=str(exc))
            return None
