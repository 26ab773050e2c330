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
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiohttp import WSMsgType, web

from common.cancellation import cancel_and_wait
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
from controlplane.events.bus import Event, EventBus

MAX_MESSAGE_BYTES = 16 * 1024
DEFAULT_TOPICS = frozenset({"deployments", "tasks"})
ADMIN_TOPICS = ("nodes", "node:")
KNOWN_TOPIC_KINDS = frozenset({"deployments", "deployment", "tasks", "task", "nodes", "node"})
CLOSE_TOO_MANY = 4429


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
    socket: web.WebSocketResponse, session: NotificationSession, events: AsyncIterator[Event]
) -> None:
    async for event in events:
        if session.wants(event):
            await socket.send_json(event.to_json())


async def _read_messages(
    socket: web.WebSocketResponse, session: NotificationSession, max_per_second: int
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
        await socket.send_json(session.reply(data))


async def serve_notifications(
    request: web.Request,
    bus: EventBus,
    authenticate: Authenticate,
    limits: SocketLimits = SocketLimits(),
) -> web.WebSocketResponse:
    """Run one notifications connection until either side closes it."""
    socket = web.WebSocketResponse(heartbeat=30.0, max_msg_size=MAX_MESSAGE_BYTES)
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
    subscription = bus.subscribe(lambda event: visible_to(event, user), name=name, maxsize=512)
    pump = asyncio.create_task(_pump_events(socket, session, subscription))
    guard = asyncio.create_task(close_when_credential_ends(request, socket, authenticate))
    try:
        await _read_messages(socket, session, limits.max_messages_per_second)
    finally:
        # Unsubscribe before the first await: the handler may be cancelled here when the
        # peer has gone, and a leaked subscription would hold a place of the account's
        # socket cap forever.
        subscription.close()
        pump.cancel()
        await cancel_and_wait(guard)
        # A send that failed because the peer went away is not an error worth raising.
        with contextlib.suppress(asyncio.CancelledError, ConnectionError, RuntimeError):
            await pump
        await socket.close()
    return socket
