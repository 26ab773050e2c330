"""`LISTEN/NOTIFY` between control planes: the one fan-out mechanism of a cluster.

Every process LISTENs on one dedicated asyncpg connection (outside the SQLAlchemy
pool: a pooled connection is handed to other work and its listeners would go with
it). A notification reaches every listening process, the sender included.

Contract:
- ``listen(channel, callback)``: `callback(payload)` runs on the event loop for every
  notification on `channel`; it must not block (queue work, set an event). With
  ``echo=False`` it is not called for this process's own ``notify_soon`` (a listener
  that already did the work before sending: on PostgreSQL those come from the
  listening connection's own backend).
- ``notify(session, channel, payload)``: sent when the session's transaction commits,
  never if it rolls back (``pg_notify`` is transactional). ``notify_soon(channel,
  payload)`` is for synchronous callers after their change committed; it is sent on
  the dedicated connection, in order.
- Payloads are small (at most :data:`MAX_PAYLOAD_BYTES`; PostgreSQL refuses 8000 and
  more): send ids, and let listeners read the rows.
- Notifications sent while a process is disconnected are lost to it. After every
  reconnect each ``on_reconnected`` callback runs, so listeners re-read what they
  follow from their last cursor (or drop their caches).

On SQLite (one process by construction) :class:`LocalNotifier` fans out in process,
after the commit, with the same contract.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
from collections import defaultdict
from collections.abc import Callable
from typing import Any, Protocol

import asyncpg  # type: ignore[import-untyped]
from sqlalchemy import event, func
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from common.cancellation import cancel_and_wait
from common.logging import get_logger

log = get_logger(__name__)

MAX_PAYLOAD_BYTES = 7999
PROBE_SECONDS = 1.0

_CONNECTION_ERRORS = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError)
Callback = Callable[[str], None]
Reconnected = Callable[[], None]


class PayloadTooLarge(ValueError):
    """A payload of 8000 bytes or more: send an id instead."""


def _checked(payload: str) -> str:
    if len(payload.encode()) > MAX_PAYLOAD_BYTES:
        raise PayloadTooLarge(f"NOTIFY payload over {MAX_PAYLOAD_BYTES} bytes: send ids only")
    return payload


class Notifier(Protocol):
    """What components use; see the module docstring for the contract."""

    def listen(self, channel: str, callback: Callback, *, echo: bool = True) -> None:
        """Call `callback(payload)` for every notification on `channel` (echo=False:
        not for this process's own `notify_soon`)."""

    def on_reconnected(self, callback: Reconnected) -> None:
        """Call `callback()` after every reconnect of the listening connection."""

    async def notify(self, session: AsyncSession, channel: str, payload: str) -> None:
        """Send `payload` on `channel` when `session`'s transaction commits."""

    def notify_soon(self, channel: str, payload: str) -> None:
        """Send `payload` on `channel` now (outside any transaction), in order."""

    async def start(self) -> None:
        """Begin listening."""

    async def close(self) -> None:
        """Stop listening."""


class _Listeners:
    def __init__(self) -> None:
        # Per channel: (callback, whether it hears this process's own notify_soon).
        self.callbacks: defaultdict[str, list[tuple[Callback, bool]]] = defaultdict(list)
        self.reconnected: list[Reconnected] = []

    def dispatch(self, channel: str, payload: str, *, own: bool = False) -> None:
        for callback, echo in self.callbacks.get(channel, ()):
            if own and not echo:
                continue
            try:
                callback(payload)
            except Exception:  # one broken listener must not silence the others
                log.exception("notify_listener_failed", channel=channel)

    def announce_reconnected(self) -> None:
        for callback in self.reconnected:
            try:
                callback()
            except Exception:
                log.exception("notify_reconnected_failed")


class LocalNotifier:
    """In-process fan-out for the embedded SQLite database (one process only)."""

    def __init__(self) -> None:
        self._listeners = _Listeners()

    def listen(self, channel: str, callback: Callback, *, echo: bool = True) -> None:
        self._listeners.callbacks[channel].append((callback, echo))

    def on_reconnected(self, callback: Reconnected) -> None:
        self._listeners.reconnected.append(callback)  # never reconnects

    async def notify(self, session: AsyncSession, channel: str, payload: str) -> None:
        _checked(payload)

        def committed(_session: Any) -> None:
            asyncio.get_running_loop().call_soon(self._listeners.dispatch, channel, payload)

        event.listen(session.sync_session, "after_commit", committed, once=True)

    def notify_soon(self, channel: str, payload: str) -> None:
        _checked(payload)
        dispatch = functools.partial(self._listeners.dispatch, channel, payload, own=True)
        asyncio.get_running_loop().call_soon(dispatch)

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None


def asyncpg_connect_args(engine: AsyncEngine) -> dict[str, Any]:
    """The keyword arguments SQLAlchemy itself would give `asyncpg.connect` for the
    engine's URL (host, port, user, password, database, ssl)."""
    _args, options = engine.dialect.create_connect_args(engine.url)
    return dict(options)


async def connect_dedicated(connect_args: dict[str, Any]) -> Any:
    """`asyncpg.connect(**connect_args)` that leaves no open connection behind when
    the caller is cancelled meanwhile (shutdown right after startup)."""
    attempt = asyncio.ensure_future(asyncpg.connect(**connect_args))
    try:
        return await asyncio.shield(attempt)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            (await attempt).terminate()
        raise


class PostgresNotifier:
    """LISTEN/NOTIFY on a dedicated asyncpg connection, reconnecting with back-off."""

    def __init__(
        self,
        connect_args: dict[str, Any],
        *,
        reconnect_initial: float = 0.2,
        reconnect_max: float = 5.0,
        probe_seconds: float = PROBE_SECONDS,
    ) -> None:
        self._connect_args = connect_args
        self._listeners = _Listeners()
        self._outbox: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
        self._backoff = (reconnect_initial, reconnect_max)
        self._probe_seconds = probe_seconds
        self._task: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()

    def listen(self, channel: str, callback: Callback, *, echo: bool = True) -> None:
        """Register before :meth:`start` (channels are LISTENed on each connect)."""
        self._listeners.callbacks[channel].append((callback, echo))

    def on_reconnected(self, callback: Reconnected) -> None:
        self._listeners.reconnected.append(callback)

    async def notify(self, session: AsyncSession, channel: str, payload: str) -> None:
        await session.exec(select(func.pg_notify(channel, _checked(payload))))

    def notify_soon(self, channel: str, payload: str) -> None:
        self._outbox.put_nowait((channel, _checked(payload)))

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="notify-listener")

    async def close(self) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task)
            self._task = None

    async def _run(self) -> None:
        initial, ceiling = self._backoff
        delay, first = initial, True
        while True:
            try:
                connection = await connect_dedicated(self._connect_args)
            except _CONNECTION_ERRORS as exc:
                log.warning("notify_connect_failed", error=str(exc))
            else:
                try:
                    await self._serve(connection, announce=not first)
                    first, delay = False, initial
                except (
                    OSError,
                    asyncpg.PostgresError,
                    asyncpg.InterfaceError,
                    TimeoutError,
                ) as exc:
                    first = False
                    log.warning("notify_connection_lost", error=str(exc))
                finally:
                    self.connected.clear()
                    connection.terminate()
            await asyncio.sleep(delay * (0.5 + random.random()))  # noqa: S311 - jitter
            delay = min(ceiling, delay * 2)

    async def _serve(self, connection: Any, *, announce: bool) -> None:
        """LISTEN on every channel, then send queued notifications and probe the
        connection until it fails (raises)."""
        lost = asyncio.Event()
        connection.add_termination_listener(lambda _c: lost.set())
        for channel in self._listeners.callbacks:
            await connection.add_listener(channel, self._on_notification)
        self.connected.set()
        if announce:
            self._listeners.announce_reconnected()
        while not lost.is_set():
            try:
                async with asyncio.timeout(self._probe_seconds):
                    channel, payload = await self._outbox.get()
            except TimeoutError:
                # A half-open TCP connection reports nothing: ask.
                await connection.fetchval("SELECT 1", timeout=self._probe_seconds)
                continue
            await connection.execute(
                "SELECT pg_notify($1, $2)", channel, payload, timeout=self._probe_seconds
            )
        raise ConnectionError("the listening connection closed")

    def _on_notification(self, connection: Any, pid: int, channel: str, payload: str) -> None:
        # notify_soon sends on this very connection: its backend is the sender.
        self._listeners.dispatch(channel, payload, own=pid == connection.get_server_pid())


def notifier_for(engine: AsyncEngine) -> Notifier:
    """The notifier for the engine's database: PostgreSQL or in-process (SQLite)."""
    if engine.dialect.name == "postgresql":
        return PostgresNotifier(asyncpg_connect_args(engine))
    return LocalNotifier()
