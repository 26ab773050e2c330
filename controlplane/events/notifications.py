"""The notifications WebSocket, `GET /v1/ws/notifications` (seed 002 style).

Authentication: an `Authorization: Bearer <token>` header on the upgrade, or, within
`AUTH_TIMEOUT` seconds, a first message `{"type": "authenticate", "token": ...}`
(:func:`controlplane.api.websocket_auth.authenticate_websocket`).

Client messages (`type`, or seed 002's `command` with its `data` object and `state`):
`ping` → `pong`; `authenticate`; `subscribe` / `unsubscribe` with `topics` (seed 002:
`data` holding them) → `subscribed` / `unsubscribed`. The reply to a message that used
`command` echoes its `command` and `state`. Topics:
`deployments`, `deployment:<id>`, `tasks`, `task:<id>`, and for admins `nodes`,
`node:<id>`. A new connection starts subscribed to `deployments` and `tasks`.

Server messages: events in seed 004's shape `{"type", "deployment_id" | "task_id" |
"node_id", "timestamp", "data"}`, and `{"type": "error", "error": {code, message}}`.
An account only ever receives events about its own deployments and tasks; node events
reach admins only.

Caps (:class:`SocketLimits`): an account holds at most `max_sockets_per_account` open
sockets, and a socket may send at most `max_messages_per_second` messages; past either
the socket gets an error frame (`too_many_sockets` / `rate_limited`) and is closed
with code 4429 (4000 + HTTP 429, as 4401 is for `unauthorized`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiohttp import WSMsgType, web

from common.cancellation import cancel_and_wait, wait_set
from common.json_input import load_untrusted_json
from controlplane.api.authentication import CurrentUser
from controlplane.api.websocket_auth import (
    Authenticate,
    authenticate_websocket,
    close_when_credential_ends,
    error_frame,
    refuse_websocket,
    seed_echo,
)
from controlplane.events.bus import Event, EventBus, Subscription
from controlplane.events.resume import CLOSE_RESUME, CursorExpired, EventStream, FellBehind
from controlplane.events.store import EventStore

MAX_MESSAGE_BYTES = 16 * 1024
DEFAULT_TOPICS = frozenset({"deployments", "tasks"})
ADMIN_TOPICS = ("nodes", "node:")
KNOWN_TOPIC_KINDS = frozenset({"deployments", "deployment", "tasks", "task", "nodes", "node"})
CLOSE_TOO_MANY = 4429
LIVE_GRACE_SECONDS = 0.5
# Events buffered per socket before it is caught up from the log instead (they are
# shared objects: a full buffer costs a few hundred KiB).
SOCKET_BUFFER = 4096
LIVE_BATCH = 256


@dataclass(frozen=True, slots=True)
class SocketLimits:
    """Per-account socket cap and per-socket message rate."""

    max_sockets_per_account: int = 10
    max_messages_per_second: int = 20


def visible_to(event: Event, user: CurrentUser) -> bool:
    """May `user` see `event` at all? Own deployments/tasks; node events for admins."""
    if event.deployment_id is not None or event.task_id is not None:
        return event.owner_id == str(user.id)
    if event.node_id is not None:
        return user.is_admin
    return event.owner_id == str(user.id)


def topics_of(event: Event) -> set[str]:
    """The topics an event is published under."""
    if event.deployment_id is not None:
        return {"deployments", f"deployment:{event.deployment_id}"}
    if event.task_id is not None:
        return {"tasks", f"task:{event.task_id}"}
    if event.node_id is not None:
        return {"nodes", f"node:{event.node_id}"}
    return {"deployments", "tasks", "nodes"}


def subscriber_name(user_id: str) -> str:
    """The bus subscription name of an account's notification sockets."""
    return f"ws:{user_id}"


def _timestamp() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


class NotificationSession:
    """One connection: its user, its topics, and the replies to client messages."""

    def __init__(self, user: CurrentUser) -> None:
        self.user = user
        self.topics: set[str] = set(DEFAULT_TOPICS)

    def wants(self, event: Event) -> bool:
        """Should `event` be sent on this connection?"""
        return visible_to(event, self.user) and bool(topics_of(event) & self.topics)

    def _checked_topics(self, raw: object) -> tuple[list[str], str | None]:
        if isinstance(raw, str):
            raw = [raw]
        if not isinstance(raw, list) or not all(isinstance(t, str) for t in raw):
            return [], "topics must be a list of strings"
        topics = [t.strip() for t in raw if t.strip()]
        for topic in topics:
            if topic.startswith(ADMIN_TOPICS) and not self.user.is_admin:
                return [], f"topic {topic!r} is for administrators only"
            if topic.split(":", 1)[0] not in KNOWN_TOPIC_KINDS:
                return [], f"unknown topic {topic!r}"
        return topics, None

    def reply(self, message: dict[str, Any]) -> dict[str, Any]:
        """The answer to one client message; a seed 002 message (`command`) gets its
        `command` and `state` echoed."""
        return {**self._answer(message), **seed_echo(message)}

    def _answer(self, message: dict[str, Any]) -> dict[str, Any]:
        kind = message.get("type") or message.get("command")
        if kind == "ping":
            return {"type": "pong", "timestamp": _timestamp()}
        if kind == "authenticate":
            return {"type": "authenticated", "user_id": str(self.user.id)}
        if kind in ("subscribe", "unsubscribe"):
            data = message.get("data")
            if isinstance(data, dict):  # seed 002: {"command": "subscribe", "data": {...}}
                data = data.get("topics", data.get("event"))
            topics, problem = self._checked_topics(message.get("topics", data))
            if problem is not None:
                return error_frame("invalid_topic", problem)
            if kind == "subscribe":
                self.topics.update(topics)
            else:
                self.topics.difference_update(topics)
            return {"type": f"{kind}d", "topics": sorted(topics), "active": sorted(self.topics)}
        return error_frame("unknown_message", f"unknown message type {kind!r}")


async def _pump_events(
    stream: EventStream, subscription: Subscription, first_message: asyncio.Event
) -> None:
    # Live events wait (buffered) for the client's first message, briefly: if it is a
    # `subscribe` with `since`, the replay goes out before them, in cursor order.
    await wait_set(first_message, LIVE_GRACE_SECONDS)
    seen_dropped = 0
    while (event := await subscription.get()) is not None:
        if subscription.dropped != seen_dropped:
            # The buffer overflowed: what it lost is in the log, this event too.
            seen_dropped = subscription.dropped
            await stream.catch_up()
            continue
        # What queued up meanwhile goes out with it, in one write.
        batch = [event]
        while len(batch) < LIVE_BATCH and (more := subscription.get_nowait()) is not None:
            batch.append(more)
        # (A None taken here is the end marker: the next get() ends the loop anyway.)
        await stream.send_live(batch)


def _since_of(message: dict[str, Any]) -> int | str | None:
    """The `since` cursor of a subscribe message (None: none; str: what is wrong)."""
    data = message.get("data")
    raw = message.get("since", data.get("since") if isinstance(data, dict) else None)
    if raw is None:
        return None
    if isinstance(raw, str) and raw.isdigit():
        raw = int(raw)
    if not isinstance(raw, int) or isinstance(raw, bool) or raw < 0:
        return "since must be a cursor (a non-negative integer)"
    return raw


async def _resume(
    socket: web.WebSocketResponse, stream: EventStream, since: int, echo: dict[str, Any]
) -> None:
    try:
        await stream.resume(since)
    except CursorExpired as exc:
        await socket.send_json({**error_frame("cursor_expired", str(exc)), **echo})
    except ValueError as exc:
        await socket.send_json({**error_frame("invalid_cursor", str(exc)), **echo})


async def _read_messages(
    socket: web.WebSocketResponse,
    session: NotificationSession,
    stream: EventStream,
    max_per_second: int,
    first_message: asyncio.Event,
) -> None:
    window_start, in_window = time.monotonic(), 0
    async for message in socket:
        now = time.monotonic()
        if now - window_start >= 1.0:
            window_start, in_window = now, 0
        in_window += 1
        if in_window > max_per_second:
            await refuse_websocket(
                socket,
                f"more than {max_per_second} messages a second",
                code="rate_limited",
                close_code=CLOSE_TOO_MANY,
            )
            return
        if message.type != WSMsgType.TEXT:
            continue
        try:
            data = load_untrusted_json(message.data)
        except ValueError:
            data = None
        if not isinstance(data, dict):
            await socket.send_json(error_frame("invalid_json", "messages are JSON objects"))
            continue
        since = (
            _since_of(data) if (data.get("type") or data.get("command")) == "subscribe" else None
        )
        if isinstance(since, str):
            await socket.send_json({**error_frame("invalid_cursor", since), **seed_echo(data)})
            continue
        reply = session.reply(data)
        await socket.send_json(reply)
        if since is not None and reply.get("type") == "subscribed":
            await _resume(socket, stream, since, seed_echo(data))
        first_message.set()


async def serve_notifications(
    request: web.Request,
    bus: EventBus,
    authenticate: Authenticate,
    limits: SocketLimits = SocketLimits(),
    store: EventStore | None = None,
) -> web.WebSocketResponse:
    """Run one notifications connection until either side closes it."""
    # No permessage-deflate: events go out as frames made once for every socket.
    socket = web.WebSocketResponse(heartbeat=30.0, max_msg_size=MAX_MESSAGE_BYTES, compress=False)
    await socket.prepare(request)
    user = await authenticate_websocket(request, socket, authenticate)
    if user is None:
        return socket
    name = subscriber_name(str(user.id))
    # No await between this check and subscribe(): parallel connects cannot all pass.
    if bus.subscribers_named(name) >= limits.max_sockets_per_account:
        await refuse_websocket(
            socket,
            f"at most {limits.max_sockets_per_account} notification sockets per account",
            code="too_many_sockets",
            close_code=CLOSE_TOO_MANY,
        )
        return socket
    session = NotificationSession(user)
    subscription = bus.subscribe(
        lambda event: visible_to(event, user), name=name, maxsize=SOCKET_BUFFER
    )
    owner = None if user.is_admin else str(user.id)
    stream = EventStream(request.transport, store, session.wants, owner)
    first_message = asyncio.Event()
    pump = asyncio.create_task(_pump_events(stream, subscription, first_message))
    reader = asyncio.create_task(
        _read_messages(socket, session, stream, limits.max_messages_per_second, first_message)
    )
    guard = asyncio.create_task(close_when_credential_ends(request, socket, authenticate))
    try:
        await asyncio.wait([pump, reader], return_when=asyncio.FIRST_COMPLETED)
    finally:
        # Unsubscribe before the first await: the handler may be cancelled here when the
        # peer has gone, and a leaked subscription would hold a place of the account's
        # socket cap forever.
        subscription.close()
        behind = any(_fell_behind(task) for task in (pump, reader))
        pump.cancel()
        reader.cancel()
        await cancel_and_wait(guard)
        # A send that failed because the peer went away is not an error worth raising.
        for task in (pump, reader):
            with contextlib.suppress(
                asyncio.CancelledError, ConnectionError, RuntimeError, FellBehind
            ):
                await task
        if behind:
            await socket.close(code=CLOSE_RESUME, message=b"resume_from_cursor")
        await socket.close()
    return socket


def _fell_behind(task: asyncio.Task[None]) -> bool:
    return task.done() and not task.cancelled() and isinstance(task.exception(), FellBehind)
