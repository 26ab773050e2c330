"""`GET /v1/events`: the event log for scripts, as a JSON page or, with
`Accept: text/event-stream`, as Server-Sent Events that resume from `Last-Event-ID`.

The caller sees its own events; administrators see every event (node events too).
A cursor older than the retained log is 410 `cursor_expired`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from aiohttp import web
from pydantic import BaseModel, Field

from controlplane.api.authentication import CurrentUser
from controlplane.api.context import current_user
from controlplane.api.errors import ApiError, ValidationFailed
from controlplane.events.bus import Event
from controlplane.events.store import CursorExpired, EventStore
from controlplane.events.wakeup import EventWakeup
from controlplane.state import EVENT_FEED

MAX_PAGE = 1000
KEEPALIVE_SECONDS = 15.0


class EventQuery(BaseModel):
    """`since`: the last cursor seen (0: from the oldest retained); `types`: a
    comma-separated list of event types (all when empty); `limit`: events a page."""

    since: int = Field(default=0, ge=0)
    types: str = ""
    limit: int = Field(default=100, ge=1, le=MAX_PAGE)


class EventPage(BaseModel):
    """Events after `since`, oldest first; `cursor` is the `since` of the next page
    (it moves past events filtered out too); `has_more` when more are waiting."""

    events: list[dict[str, Any]]
    cursor: int
    has_more: bool


class _Reader:
    """The caller's view of the log: visibility and the `types` filter."""

    def __init__(self, store: EventStore, user: CurrentUser, types: str) -> None:
        self._store = store
        self._owner = None if user.is_admin else str(user.id)
        self._types = {t.strip() for t in types.split(",") if t.strip()}

    async def check(self, since: int) -> None:
        try:
            await self._store.check_cursor(since)
        except CursorExpired as exc:
            raise ApiError(str(exc), code="cursor_expired", status=410) from None

    async def page(
        self, since: int, limit: int, *, look: bool = False
    ) -> tuple[list[Event], int, bool]:
        """Up to `limit` wanted events after `since`, the cursor read up to, and
        whether the log has more after it. With `look`, the settled horizon moves
        first: a page shows what committed before the request (the caller's own
        writes), not only what the feed has caught up with."""
        if look:
            await self._store.horizon.advance()
        rows = await self._store.read_after(since, limit, owner_id=self._owner)
        cursor = rows[-1].cursor or since if rows else since
        wanted = [e for e in rows if not self._types or e.type_name in self._types]
        return wanted, cursor, len(rows) == limit


async def list_events(request: web.Request, query: EventQuery) -> web.StreamResponse:
    """The caller's events after `since` (admins: every event), as a JSON page, or as
    Server-Sent Events (`Accept: text/event-stream`, resuming from `Last-Event-ID`)."""
    feed = request.app[EVENT_FEED]
    reader = _Reader(feed.store, current_user(request), query.types)
    if "text/event-stream" in request.headers.get("Accept", ""):
        since = _last_event_id(request, query.since)
        await reader.check(since)
        return await _stream(request, reader, feed.wakeup, since)
    await reader.check(query.since)
    events, cursor, more = await reader.page(query.since, query.limit, look=True)
    page = EventPage(events=[e.to_json() for e in events], cursor=cursor, has_more=more)
    return web.json_response(page.model_dump(mode="json"))


def _last_event_id(request: web.Request, since: int) -> int:
    raw = request.headers.get("Last-Event-ID")
    if raw is None:
        return since
    if not raw.strip().isdigit():
        raise ValidationFailed("Last-Event-ID must be an event cursor", code="invalid_cursor")
    return int(raw)


async def _stream(
    request: web.Request, reader: _Reader, wakeup: EventWakeup, since: int
) -> web.StreamResponse:
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
    )
    await response.prepare(request)
    cursor, look = since, True
    with contextlib.suppress(ConnectionError):
        while True:
            # Known before reading: whatever commits after the read wakes the wait.
            known = wakeup.known
            events, cursor, more = await reader.page(cursor, MAX_PAGE, look=look)
            look = False
            for event in events:
                body = json.dumps(event.to_json(), separators=(",", ":"))
                await response.write(f"id: {event.cursor}\nevent: {event.type_name}\n"
                                     f"data: {body}\n\n".encode())  # fmt: skip
            if more:
                continue
            try:
                async with asyncio.timeout(KEEPALIVE_SECONDS):
                    await wakeup.wait_beyond(max(cursor, known))
            except TimeoutError:
                await response.write(b": keep-alive\n\n")
    return response
