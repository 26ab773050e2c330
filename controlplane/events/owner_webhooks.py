"""Per-account webhooks as the dispatcher sees them: read from the database, cached
briefly, forgotten at once when the account changes them through the API."""

from __future__ import annotations

import time
import uuid

from sqlmodel import col, select

from controlplane.db.engine import Database
from controlplane.db.tables.webhooks import Webhook
from controlplane.events.webhooks import WebhookEndpoint

CACHE_SECONDS = 30.0


class DatabaseOwnerEndpoints:
    """:class:`~controlplane.events.webhooks.OwnerEndpoints` over the `webhooks` table."""

    def __init__(self, database: Database, cache_seconds: float = CACHE_SECONDS) -> None:
        self._db = database
        self._cache_seconds = cache_seconds
        self._cache: dict[str, tuple[float, list[WebhookEndpoint]]] = {}

    async def for_owner(self, owner_id: str) -> list[WebhookEndpoint]:
        cached = self._cache.get(owner_id)
        now = time.monotonic()
        if cached is not None and now - cached[0] < self._cache_seconds:
            return cached[1]
        try:
            owner = uuid.UUID(owner_id)
        except ValueError:
            return []
        async with self._db.session() as session:
            rows = (await session.exec(select(Webhook).where(col(Webhook.user_id) == owner))).all()
        endpoints = [WebhookEndpoint(row.url, row.secret, owner_id) for row in rows]
        self._cache[owner_id] = (now, endpoints)
        return endpoints

    def forget(self, owner_id: str) -> None:
        """Drop the cached endpoints of an account (call after it changed them)."""
        self._cache.pop(owner_id, None)
