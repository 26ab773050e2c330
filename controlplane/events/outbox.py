"""Webhook delivery from the event log: at-least-once across restarts, in order per
receiver, retried with back-off, dead after a while.

Contract:

- Every receiver (the operator's WEBHOOK_URL, key ``operator``, and every account's
  webhook, key = its id) has a cursor in ``webhook_cursors``: the events up to it have
  their deliveries written. One worker per receiver turns the next events it wants
  (plus seed 004's rollout events derived from them) into ``webhook_deliveries`` rows
  and moves the cursor in the same transaction, then works through its pending
  deliveries oldest first. A new receiver starts at the settled horizon
  (:meth:`EventStore.start`); reads stop at it.
- A delivery is sent until a receiver answers 2xx (``delivered``); a refused address
  or a 4xx other than 408/429 ends it at once (``failed``); otherwise it is retried
  with back-off until ``dead_after`` seconds after its first attempt (``dead``), after
  which the deliveries behind it go ahead. The outcome is written after the attempt,
  so a process killed in between sends the delivery again: every attempt of one event
  carries the same ``X-Encedeus-Event-Id`` and ``X-Encedeus-Delivery``.
- A dead or failed delivery can be replayed (:func:`replay`): it goes back to pending,
  before the receiver's other pending deliveries.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from sqlalchemy import delete
from sqlmodel import col, select

from common.cancellation import wait_set
from common.logging import get_logger
from controlplane.db.engine import Database
from controlplane.db.tables.events import MailMessage, WebhookCursor, WebhookDelivery
from controlplane.db.tables.webhooks import Webhook
from controlplane.db.types import utcnow
from controlplane.events.bus import Event
from controlplane.events.store import EventStore
from controlplane.events.wakeup import EventWakeup
from controlplane.events.webhooks import (
    REFUSED,
    Delivery,
    RetryPolicy,
    WebhookDispatcher,
    WebhookEndpoint,
    webhook_payload,
)

log = get_logger(__name__)

OPERATOR = "operator"
BATCH = 100
REFRESH_SECONDS = 2.0
IDLE_PERSIST_SECONDS = 30.0
FORGET_GONE_SECONDS = 60.0
Deriver = Callable[[Event], Sequence[Event]]


@dataclass(frozen=True, slots=True)
class OutboxPolicy:
    """When a failing delivery is dead, and how retries back off."""

    dead_after: float = 3600.0
    retry: RetryPolicy = field(default_factory=lambda: RetryPolicy(base=1.0, cap=60.0))


def event_id_of(event: Event, derived: bool) -> str:
    """The idempotency key of `event` (a derived seed event: `<cursor>.<type>`)."""
    return f"{event.cursor}.{event.type_name}" if derived else str(event.cursor)


class WebhookOutbox:
    """The delivery workers (see module doc); :meth:`run` until cancelled.

    `followers`: keys of `webhook_cursors` rows that are not receivers' (the mail
    notifier's) and are kept; every other row without a receiver is deleted."""

    def __init__(
        self,
        store: EventStore,
        wakeup: EventWakeup,
        sender: WebhookDispatcher,
        operator: WebhookEndpoint | None,
        policy: OutboxPolicy,
        derive: Callable[[], Deriver] | None = None,
        followers: frozenset[str] = frozenset(),
    ) -> None:
        self._store = store
        self._followers = followers
        self._db: Database = store.database
        self._wakeup = wakeup
        self._sender = sender
        self._operator = operator
        self._policy = policy
        self._derive = derive
        self._workers: dict[str, tuple[WebhookEndpoint, asyncio.Task[None]]] = {}
        self._changed = asyncio.Event()
        self._replayed: set[str] = set()  # receivers with a delivery made pending again
        self._forgot_at: float | None = None

    def poke(self) -> None:
        """Re-read the receivers and pending deliveries now (after an API change)."""
        self._changed.set()

    def replayed(self, key: str) -> None:
        """A delivery of receiver `key` was made pending again: its worker looks for
        it at its next wake-up (an event, or REFRESH_SECONDS)."""
        self._replayed.add(key)

    async def run(self) -> None:
        """Keep one worker per receiver until cancelled."""
        try:
            while True:
                await self._refresh()
                self._changed.clear()
                await wait_set(self._changed, REFRESH_SECONDS)
        finally:
            for _, task in self._workers.values():
                task.cancel()
            for _, task in self._workers.values():
                await asyncio.gather(task, return_exceptions=True)

    async def _receivers(self) -> dict[str, WebhookEndpoint]:
        async with self._db.session() as session:
            rows = (await session.exec(select(Webhook))).all()
        found = {
            str(row.id): WebhookEndpoint(row.url, row.secret, str(row.user_id), key=str(row.id))
            for row in rows
        }
        if self._operator is not None:
            found[OPERATOR] = self._operator
        return found

    async def _refresh(self) -> None:
        try:
            wanted = await self._receivers()
        except Exception as exc:
            log.warning("webhook_receivers_unavailable", error=str(exc))
            return
        gone = False
        for key, (endpoint, task) in list(self._workers.items()):
            if wanted.get(key) != endpoint or task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                del self._workers[key]
                gone = gone or key not in wanted
        for key, endpoint in wanted.items():
            if key not in self._workers:
                task = asyncio.create_task(self._serve(endpoint), name=f"webhook:{key}")
                self._workers[key] = (endpoint, task)
        # A write (a writer turn on SQLite): only when a receiver went, at start (gone
        # while stopped) and now and then (gone elsewhere before a worker started).
        now = asyncio.get_running_loop().time()
        if gone or self._forgot_at is None or now - self._forgot_at >= FORGET_GONE_SECONDS:
            await self._forget_gone(set(wanted))
            self._forgot_at = now

    async def _forget_gone(self, keys: set[str]) -> None:
        """Delete the cursors of receivers that are gone: one must not hold back the
        pruning of the log (the other followers' cursors are not receivers').

        `keys` were read earlier: a webhook created since (its cursor is written with
        it) is not among them. So each candidate's cursor goes in a statement that
        itself finds no webhook with that id: it sees the webhook exactly when it sees
        the cursor, both being committed together."""
        keys = keys | self._followers
        async with self._db.transaction() as session:
            found = select(WebhookCursor.endpoint).where(col(WebhookCursor.endpoint).not_in(keys))
            for endpoint in (await session.exec(found)).all():
                gone = delete(WebhookCursor).where(col(WebhookCursor.endpoint) == endpoint)
                with contextlib.suppress(ValueError):  # not a webhook's id: gone for sure
                    hook = select(Webhook.id).where(col(Webhook.id) == uuid.UUID(endpoint))
                    gone = gone.where(~hook.exists())
                await session.exec(gone)

    async def _serve(self, endpoint: WebhookEndpoint) -> None:
        try:
            await _Worker(self, endpoint).run()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("webhook_worker_failed", url=endpoint.log_url)

    # Used by the worker.
    @property
    def policy(self) -> OutboxPolicy:
        """The outbox's retry and dead-after settings."""
        return self._policy


class _Worker:
    """Serves one receiver: materialise its next events, send its pending deliveries."""

    def __init__(self, outbox: WebhookOutbox, endpoint: WebhookEndpoint) -> None:
        self._outbox = outbox
        self._db = outbox._db
        self._store = outbox._store
        self._wakeup = outbox._wakeup
        self._endpoint = endpoint
        self._derive = outbox._derive() if outbox._derive else None
        self._persisted_at = 0.0
        # Whether pending deliveries may exist. Only this worker adds them (and the
        # replay API, which tells it): once none were found, every other receiver's
        # event need not look again (40 receivers: 40 queries per event).
        self._maybe_pending = True

    async def run(self) -> None:
        cursor = await self._cursor()
        while True:
            if self._endpoint.key in self._outbox._replayed:
                self._outbox._replayed.discard(self._endpoint.key)
                self._maybe_pending = True
            if self._maybe_pending:
                delivery = await self._next_pending()
                if delivery is not None:
                    await self._work_on(delivery)
                    continue
                self._maybe_pending = False
            known = self._wakeup.known
            owner = self._endpoint.owner_id
            events = await self._store.read_after(cursor, BATCH, owner_id=owner)
            if events:
                cursor = await self._materialise(events)
                self._maybe_pending = True
                continue
            if known > cursor:
                cursor = await self._skip_to(known)
            if not await self._wait_beyond(cursor):
                # Idle a while: look again (a replay made by another process).
                self._maybe_pending = True

    async def _wait_beyond(self, cursor: int) -> bool:
        """Wait for an event beyond `cursor`; False when REFRESH_SECONDS passed first."""
        try:
            async with asyncio.timeout(REFRESH_SECONDS):
                await self._wakeup.wait_beyond(cursor)
        except TimeoutError:
            return False
        return True

    async def _cursor(self) -> int:
        return await self._store.follower_cursor(self._endpoint.key)

    async def _skip_to(self, cursor: int) -> int:
        """Nothing for this receiver up to `cursor`: move on (written now and then)."""
        now = asyncio.get_running_loop().time()
        if now - self._persisted_at >= IDLE_PERSIST_SECONDS:
            self._persisted_at = now
            async with self._db.transaction() as session:
                row = await session.get(WebhookCursor, self._endpoint.key)
                if row is not None and row.cursor < cursor:
                    row.cursor = cursor
        return cursor

    async def _materialise(self, events: list[Event]) -> int:
        rows: list[WebhookDelivery] = []
        for event in events:
            rows.append(self._row(event, derived=False))
            for seed in self._derive(event) if self._derive else ():
                rows.append(self._row(seed, derived=True, cursor=event.cursor))
        last = events[-1].cursor
        assert last is not None
        async with self._db.transaction() as session:
            session.add_all(rows)
            row = await session.get(WebhookCursor, self._endpoint.key)
            if row is None:
                session.add(WebhookCursor(endpoint=self._endpoint.key, cursor=last))
            else:
                row.cursor = last
        return last

    def _row(self, event: Event, *, derived: bool, cursor: int | None = None) -> WebhookDelivery:
        if event.cursor is None:
            event = replace(event, cursor=cursor)
        assert event.cursor is not None
        return WebhookDelivery(
            endpoint=self._endpoint.key,
            event_id=event.cursor,
            event_key=event_id_of(event, derived),
            event_type=event.type_name,
            body=json.dumps(webhook_payload(event), separators=(",", ":")),
        )

    async def _next_pending(self) -> WebhookDelivery | None:
        query = (
            select(WebhookDelivery)
            .where(
                col(WebhookDelivery.endpoint) == self._endpoint.key,
                col(WebhookDelivery.status) == "pending",
            )
            .order_by(col(WebhookDelivery.id))
            .limit(1)
        )
        async with self._db.session() as session:
            return (await session.exec(query)).first()

    async def _work_on(self, delivery: WebhookDelivery) -> None:
        if delivery.next_attempt_at is not None:
            wait = (delivery.next_attempt_at - utcnow()).total_seconds()
            if wait > 0:
                await asyncio.sleep(wait)
        started = utcnow()
        first = delivery.first_attempt_at or started
        attempt = Delivery(
            self._endpoint,
            delivery.event_type,
            delivery.body.encode(),
            id=str(delivery.id),
            attempts=delivery.attempts,
            event_id=delivery.event_key,
        )
        status = await self._outbox._sender.attempt(attempt)
        outcome = _outcome(status, first, started, self._outbox.policy)
        async with self._db.transaction() as session:
            row = await session.get(WebhookDelivery, delivery.id)
            if row is None:
                return
            row.attempts += 1
            row.status = outcome
            row.last_status_code = status
            row.last_error = "" if status is not None else "no answer"
            row.first_attempt_at = first
            row.last_attempt_at = started
            row.next_attempt_at = (
                started + timedelta(seconds=self._outbox.policy.retry.delay(row.attempts))
                if outcome == "pending"
                else None
            )
        if outcome == "delivered":
            self._outbox._sender.delivered += 1
        elif outcome != "pending":
            self._outbox._sender.failed += 1
            log.warning("webhook_delivery_" + outcome, url=self._endpoint.log_url)


def _outcome(status: int | None, first: datetime, now: datetime, policy: OutboxPolicy) -> str:
    """The delivery's status after an attempt that got `status` (None: no answer)."""
    if status is not None and 200 <= status < 300:
        return "delivered"
    if status == REFUSED or (status is not None and status < 500 and status not in (408, 429)):
        return "failed"
    if (now - first).total_seconds() >= policy.dead_after:
        return "dead"
    return "pending"


async def prune_finished(database: Database, older_than: datetime) -> int:
    """Delete finished deliveries (and sent or dead mails) created before `older_than`;
    pending ones stay whatever their age. How many rows went."""
    async with database.transaction() as session:
        deliveries = await session.exec(
            delete(WebhookDelivery).where(
                col(WebhookDelivery.status) != "pending",
                col(WebhookDelivery.created_at) < older_than,
            )
        )
        mails = await session.exec(
            delete(MailMessage).where(
                col(MailMessage.status) != "pending", col(MailMessage.created_at) < older_than
            )
        )
    return int(deliveries.rowcount or 0) + int(mails.rowcount or 0)
