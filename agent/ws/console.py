"""The browser console WebSocket, `GET /api/servers/{id}/ws` (Wings-style frames).

Frames are JSON `{"event": ..., "args": [...]}`. See docs/protocols/console.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from json.encoder import encode_basestring_ascii
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from agent.config import Console, NodeIdentity
from agent.console.history import ConsoleLine
from agent.fleet.server import ManagedServer
from agent.fleet.server_stats import server_stats
from agent.fleet.supervisor import Supervisor
from agent.lifecycle.machine import State
from agent.runtime import ContainerRuntimeError
from agent.ws.console_feed import LiveFeed
from agent.ws.gate import SocketGate
from common.cancellation import cancel_and_wait, wait_set
from common.json_input import load_untrusted_json
from common.logging import get_logger
from common.tokens import ServerToken, TokenError, TokenExpiredError
from common.websocket_frames import text_frame
from protos import agent_pb2 as pb

log = get_logger(__name__)
EXPIRY_WARNING_SECONDS = 60
STATS_INTERVAL = 1.0
SET_STATE_PERMISSION = {
    "start": "control.start",
    "stop": "control.stop",
    "restart": "control.restart",
    "kill": "control.stop",
}


def frame(event: str, *args: Any) -> str:
    return json.dumps({"event": event, "args": list(args)})


# The frame of one output line, made without the dict and list `frame()` builds (this
# runs once per line, in the loop turn that read it: docs/performance.md, "Console
# latency"). Install scripts' output (agent/fleet/install.py) has its own event, as in
# Wings.
_CONSOLE_PREFIX = '{"event": "console output", "args": ['
_INSTALL_PREFIX = '{"event": "install output", "args": ['


def line_frame(line: ConsoleLine) -> str:
    """`frame(event, line.text)` for the line's event, without building it."""
    prefix = _INSTALL_PREFIX if line.stream == "install" else _CONSOLE_PREFIX
    return prefix + encode_basestring_ascii(line.text) + "]}"


def stats_payload(stats: pb.ServerStats) -> str:
    return json.dumps(
        {
            "memory_bytes": stats.memory_bytes,
            "memory_limit_bytes": stats.memory_limit_bytes,
            "cpu_absolute": round(stats.cpu_absolute, 3),
            "network": {"rx_bytes": stats.network.rx_bytes, "tx_bytes": stats.network.tx_bytes},
            "disk_bytes": stats.disk_bytes,
            "uptime_ms": stats.uptime_ms,
            "state": pb.ServerState.Name(stats.state).removeprefix("SERVER_STATE_").lower(),
        }
    )


class ConsoleSockets:
    """Accepts console sockets through the shared gate (:mod:`agent.ws.gate`: Origin,
    the server's cap, the client address's unauthenticated sockets, tokens of scope
    `console`), then runs one `ConsoleSession` per socket."""

    def __init__(
        self,
        limits: Console,
        identity: NodeIdentity,
        supervisor: Supervisor,
        started_at: float,
        *,
        expiry_warning_seconds: float = EXPIRY_WARNING_SECONDS,
    ) -> None:
        self.limits, self.supervisor = limits, supervisor
        self.expiry_warning_seconds = expiry_warning_seconds  # `token expiring` lead time
        self.gate = SocketGate(
            "console", limits, identity, supervisor, started_at, what="console sockets"
        )

    async def handle(self, request: web.Request) -> web.StreamResponse:
        max_bytes = self.limits.ws_max_message_bytes
        async with self.gate.admitted(request, max_message_bytes=max_bytes) as ws:
            server_id, address = request.match_info["server_id"], request.remote or ""
            await ConsoleSession(self, ws, server_id, address, request.transport).run()
        return ws

    async def close_all(self) -> None:
        await self.gate.close_all()


class ConsoleSession:
    """One viewer of one server. Live output flows only while its token is valid: at
    expiry it stops, `token expired` is sent and every command is refused until a fresh
    `auth` on the same socket, which resumes it (as Wings does; the socket stays open)."""

    def __init__(
        self,
        owner: ConsoleSockets,
        ws: web.WebSocketResponse,
        server_id: str,
        address: str,
        transport: asyncio.Transport | None,
    ) -> None:
        self.owner, self.ws, self.server_id, self.address = owner, ws, server_id, address
        # The upgraded connection's transport: output lines are written to it as whole
        # frames when nothing waits in its buffer (see _send_line_now).
        self._transport = transport
        self.token: ServerToken | None = None
        self._window_start, self._window_count = time.monotonic(), 0
        self._live: asyncio.Task[None] | None = None
        self._token_changed = asyncio.Event()  # wakes the live feeds
        self._token_renewed = asyncio.Event()  # wakes the guard against tokenless sockets

    async def run(self) -> None:
        guard = asyncio.create_task(self._close_without_valid_token())
        try:
            async for message in self.ws:
                if message.type is not WSMsgType.TEXT:
                    if message.type is WSMsgType.ERROR:
                        break
                    continue
                if self._throttled():
                    await self.send("daemon error", "too many messages: slow down")
                    continue
                await self._dispatch(message.data)
        finally:
            await cancel_and_wait(guard)
            await self._stop_live()

    async def _close_without_valid_token(self) -> None:
        """Close the socket once it has been `ws_auth_timeout_seconds` without a valid
        token, so sockets nobody authenticates do not hold the per-server cap."""
        opened_at = time.time()
        grace = self.owner.limits.ws_auth_timeout_seconds
        while True:
            self._token_renewed.clear()
            invalid_from = opened_at if self.token is None else self.token.expires_at
            remaining = invalid_from + grace - time.time()
            if remaining <= 0:
                await self._close(WSCloseCode.POLICY_VIOLATION, "no valid token")
                return
            await wait_set(self._token_renewed, remaining)

    async def _close(self, code: int, why: str) -> None:
        await self.owner.gate.close(self.ws, self.address, self.server_id, code, why)

    def _throttled(self) -> bool:
        now = time.monotonic()
        if now - self._window_start >= 1.0:
            self._window_start, self._window_count = now, 0
        self._window_count += 1
        return self._window_count > self.owner.limits.ws_max_messages_per_second

    async def send(self, event: str, *args: Any) -> None:
        await self._send_text(frame(event, *args))

    async def _send_text(self, text: str) -> None:
        if not self.ws.closed:
            with contextlib.suppress(ConnectionError):
                await self.ws.send_str(text)

    async def _dispatch(self, text: str) -> None:
        try:
            message = load_untrusted_json(text)
            event, args = str(message["event"]), list(message.get("args") or [])
        except (ValueError, KeyError, TypeError):
            await self.send("daemon error", "malformed frame")
            return
        if event == "auth":
            await self._auth(str(args[0]) if args else "")
            return
        if self.token is None:
            await self.send("jwt error", "not authenticated")
            return
        if self._expired():
            await self.send("jwt error", "token expired")
            return
        try:
            await self._authorized(event, args)
        except (ContainerRuntimeError, TimeoutError) as exc:
            await self.send("daemon error", str(exc) or type(exc).__name__)

    async def _authorized(self, event: str, args: list[Any]) -> None:
        assert self.token is not None
        server = self.owner.supervisor.get(self.server_id)
        if event == "send command":
            if not self.token.allows("control.console"):
                await self.send("daemon error", "permission denied: control.console")
                return
            await self.owner.supervisor.send_command(self.server_id, str(args[0] if args else ""))
        elif event == "set state":
            await self._set_state(str(args[0]) if args else "")
        elif event == "send logs":
            for line in server.history.tail():
                await self._send_line(line)
        elif event == "send stats":
            await self._send_stats(server)
        else:
            await self.send("daemon error", f"unknown event {event!r}")

    async def _set_state(self, action: str) -> None:
        assert self.token is not None
        permission = SET_STATE_PERMISSION.get(action)
        if permission is None:
            await self.send("daemon error", f"unknown state {action!r}")
            return
        if not self.token.allows(permission):
            await self.send("daemon error", f"permission denied: {permission}")
            return
        supervisor = self.owner.supervisor
        operations = {
            "start": supervisor.start,
            "stop": supervisor.stop,
            "restart": supervisor.restart,
            "kill": supervisor.kill,
        }
        await operations[action](self.server_id)

    async def _auth(self, token: str) -> None:
        try:
            claims = self.owner.gate.verify(token, self.server_id)
        except TokenExpiredError:
            await self.send("token expired")
            return
        except TokenError as exc:
            await self.send("jwt error", str(exc))
            return
        if not self.owner.gate.authenticate(self.ws, self.address, self.server_id):
            await self.send("daemon error", "too many console sockets for this server")
            await self._close(WSCloseCode.TRY_AGAIN_LATER, "server full")
            return
        self.token = claims
        self._token_changed.set()
        self._token_renewed.set()
        await self.send("auth success")
        server = self.owner.supervisor.get(self.server_id)
        await self.send("status", _state_name(server))
        if self._live is None:  # the first auth on this socket
            for line in server.history.tail():
                await self._send_line(line)
            self._live = asyncio.create_task(self._run_live(server))

    def _expired(self) -> bool:
        return self.token is None or time.time() >= self.token.expires_at

    async def _send_line(self, line: ConsoleLine) -> None:
        await self._send_text(line_frame(line))

    def _send_line_now(self, line: ConsoleLine) -> bool:
        """Write the line's frame straight to the connection's transport when the kernel
        took everything written so far (a line's hot path: no coroutine, no aiohttp
        writer; docs/performance.md, "Console latency"). False when something waits in
        the buffer (a client falling behind): then the line takes :meth:`_send_line`,
        aiohttp's path, which waits for the socket to drain."""
        transport = self._transport
        if (
            transport is None
            or self.ws.closed
            or transport.is_closing()
            or transport.get_write_buffer_size()
        ):
            return False
        transport.write(text_frame(line_frame(line).encode()))
        return True

    async def _send_stats(self, server: ManagedServer) -> None:
        samples = await self.owner.supervisor.tracker.sampler.latest(STATS_INTERVAL / 2)
        await self.send("stats", stats_payload(server_stats(server, samples.get(server.id))))

    async def _stop_live(self) -> None:
        if self._live is not None:
            await cancel_and_wait(self._live)
            self._live = None

    async def _run_live(self, server: ManagedServer) -> None:
        # Owned by this session and cancelled in run()'s finally: never outlives it.
        while True:
            async with asyncio.TaskGroup() as tasks:
                feeds = [
                    tasks.create_task(self._feed_console(server)),
                    tasks.create_task(self._feed_status(server)),
                    tasks.create_task(self._feed_stats(server)),
                ]
                await self._until_token_expires()
                for feed in feeds:
                    feed.cancel()
            # A fresh token may have arrived while the feeds stopped: then say nothing.
            if self._expired():
                await self.send("token expired")
            while self._expired():
                self._token_changed.clear()
                await self._token_changed.wait()

    async def _until_token_expires(self) -> None:
        """Return when the current token has expired; say `token expiring` once per
        token `expiry_warning_seconds` before. A re-auth meanwhile re-arms both."""
        warned_for = ""
        while self.token is not None:
            self._token_changed.clear()
            remaining = self.token.expires_at - time.time()
            if remaining <= 0:
                return
            lead = self.owner.expiry_warning_seconds
            if remaining <= lead and warned_for != self.token.token_id:
                await self.send("token expiring")
                warned_for = self.token.token_id
            wake_in = remaining - lead if remaining > lead else remaining
            await wait_set(self._token_changed, wake_in)

    async def _feed_console(self, server: ManagedServer) -> None:
        # Lines go out as the history gets them (agent/ws/console_feed.py); this task
        # only finishes sends a slow client made wait. Listening spans the server's
        # runs: the history is the server's, not one run's.
        feed = LiveFeed(self._send_line, send_now=self._send_line_now)
        server.history.add_listener(feed)
        try:
            await feed.run()
        finally:
            server.history.remove_listener(feed)

    async def _feed_status(self, server: ManagedServer) -> None:
        hub = self.owner.supervisor.tracker.hub
        queue = hub.subscribe()
        try:
            while (event := await queue.get()) is not None:
                if event.lifecycle.server_id == server.id:
                    await self.send("status", _state_name(server))
        finally:
            hub.unsubscribe(queue)

    async def _feed_stats(self, server: ManagedServer) -> None:
        while True:
            if server.machine.state is not State.OFFLINE:
                await self._send_stats(server)
            await asyncio.sleep(STATS_INTERVAL)


def _state_name(server: ManagedServer) -> str:
    return server.machine.state.value
