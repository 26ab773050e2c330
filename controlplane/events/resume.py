"""Resumable delivery of events to one notifications socket: cursors, replay from the
log, and catch-up of a subscriber that fell behind.

Contract of :class:`EventStream` (one per connection):

- Every event sent carries its ``cursor``; they go out in cursor order, each at most
  once: a live event at or below the highest cursor sent is skipped.
- Events are written to the connection's transport as ready WebSocket frames, the
  events of a batch (live events that queued up, a page of a replay) in one write,
  and each event's JSON and frame are made once for every socket (by the feed).
- :meth:`EventStream.resume` replays, in order, every event after ``since`` that the
  connection wants (the same visibility and topic rules as live events), except those
  already sent live on this connection, then live events continue with no gap: the
  replay and live sending share one lock, and the live subscription exists before the
  replay reads the log.
- :meth:`EventStream.catch_up` is called when the live subscription dropped events
  (its buffer was full): it reads them back from the log. A connection more than
  ``max_behind`` events behind, or whose socket accepts nothing for ``send_timeout``
  seconds, is closed with :data:`CLOSE_RESUME`: the client reconnects and resumes from
  the last cursor it received.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence

from common.websocket_frames import text_frame
from controlplane.events.bus import Event
from controlplane.events.store import CursorExpired, EventStore

#: Close code: "you fell behind; reconnect and subscribe with `since` = your last cursor".
CLOSE_RESUME = 4408
MAX_BEHIND = 10_000
SEND_TIMEOUT = 10.0
PAGE = 500
#: Bytes the kernel has not taken yet past which a send waits (up to SEND_TIMEOUT).
HIGH_WATER_BYTES = 1 << 20
DRAIN_POLL_SECONDS = 0.05
_TRACKED_BEFORE_RESUME = 10_000


class FellBehind(Exception):
    """The connection cannot keep up: close it with :data:`CLOSE_RESUME`."""


class EventStream:
    """What one connection has sent, and the replays that fill its gaps (module doc).

    `transport` is the upgraded connection's (None: it is gone).
    `wants` says whether the connection wants an event (visibility and topics);
    `owner_id` narrows log reads to one account's events (None: every event, for
    administrators).
    """

    def __init__(
        self,
        transport: asyncio.Transport | None,
        store: EventStore | None,
        wants: Callable[[Event], bool],
        owner_id: str | None,
        *,
        max_behind: int = MAX_BEHIND,
        send_timeout: float = SEND_TIMEOUT,
    ) -> None:
        self._transport = transport
        self._store = store
        self._wants = wants
        self._owner_id = owner_id
        self._max_behind = max_behind
        self._send_timeout = send_timeout
        self._lock = asyncio.Lock()
        self.last = 0
        # Cursors sent live before the first resume, so a replay does not repeat them.
        self._sent_live: set[int] | None = set()

    async def send_live(self, events: Sequence[Event]) -> None:
        """Send those of `events` that were not sent already and are wanted, in one
        write."""
        async with self._lock:
            frames = []
            for event in events:
                if event.cursor is not None and event.cursor <= self.last:
                    continue
                if not self._wants(event):
                    continue
                frames.append(frame_of(event))
                if event.cursor is not None:
                    self.last = event.cursor
                    sent_live = self._sent_live
                    if sent_live is not None and len(sent_live) < _TRACKED_BEFORE_RESUME:
                        sent_live.add(event.cursor)
            if frames:
                await self._write(frames)

    async def resume(self, since: int) -> None:
        """Replay what the connection missed after `since` (see module doc). Raises
        CursorExpired when the log no longer holds it, ValueError for a cursor that
        was never handed out."""
        if self._store is None:
            return
        await self._store.check_cursor(since)
        if since > await self._store.latest():
            raise ValueError(f"cursor {since} is ahead of the newest event")
        # What committed before the request is replayed now, not when the feed's
        # horizon gets there (it would come live then, in order, either way).
        await self._store.horizon.advance()
        async with self._lock:
            skip = self._sent_live or set()
            self._sent_live = None
            self.last = max(self.last, await self._replay(since, skip))

    async def catch_up(self) -> None:
        """Send what the live subscription dropped, read back from the log."""
        if self._store is None:
            return
        async with self._lock:
            self.last = await self._replay(self.last, set())

    async def _replay(self, cursor: int, skip: set[int]) -> int:
        assert self._store is not None
        sent = 0
        while True:
            page = await self._store.read_after(cursor, PAGE, owner_id=self._owner_id)
            frames = []
            for event in page:
                assert event.cursor is not None
                cursor = event.cursor
                if event.cursor in skip or not self._wants(event):
                    continue
                sent += 1
                if sent > self._max_behind:
                    raise FellBehind(f"more than {self._max_behind} events behind")
                frames.append(frame_of(event))
            if frames:
                await self._write(frames)
            if len(page) < PAGE:
                return cursor

    async def _write(self, frames: list[bytes]) -> None:
        # Whole frames, written synchronously: they never interleave with the frames
        # aiohttp writes for the socket's other messages (replies, pings, close).
        transport = self._transport
        if transport is None or transport.is_closing():
            raise ConnectionResetError("the notifications socket is closed")
        transport.write(b"".join(frames))
        if transport.get_write_buffer_size() <= HIGH_WATER_BYTES:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._send_timeout
        while transport.get_write_buffer_size() > HIGH_WATER_BYTES:
            if loop.time() > deadline or transport.is_closing():
                raise FellBehind(f"the socket took no data for {self._send_timeout} s")
            await asyncio.sleep(DRAIN_POLL_SECONDS)


def frame_of(event: Event) -> bytes:
    """The event as a WebSocket text frame (made once by the feed for every socket,
    :func:`controlplane.events.feed.with_wire`; here only for events that did not come
    through it)."""
    if event.wire is not None:
        return event.wire
    return text_frame(json.dumps(event.to_json(), separators=(",", ":")).encode())


__all__ = ["CLOSE_RESUME", "CursorExpired", "EventStream", "FellBehind"]
