"""The exec WebSocket, `GET /api/servers/{id}/exec`: a command in the server's
container with a TTY, frames shaped like Nomad's exec socket.

See docs/protocols/exec.md. The token (scope `exec`) names the command and is good
for one session: its `jti` is refused a second time. The end of every session is
reported to the control plane (`ControlPlane.exec_ended`).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import heapq
import json
import re
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from agent.config import Console, NodeIdentity
from agent.controlplane_client import ControlPlane, ControlPlaneError
from agent.fleet.supervisor import Supervisor
from agent.runtime import ContainerRuntimeError, ExecProcess, NotRunning
from agent.ws.gate import SocketGate
from common.cancellation import cancel_and_wait
from common.logging import get_logger
from common.tokens import ServerToken, TokenError

log = get_logger(__name__)
EXEC_PERMISSION = "exec"
MAX_MESSAGE_BYTES = 64 * 1024
MAX_TTY_SIDE = 1000
DEFAULT_SIZE = (24, 80)
DEFAULT_TERM = "xterm"
EOF_CHARACTER = b"\x04"  # what `stdin.close` types: the TTY's end-of-file (Ctrl-D)
SPENT_TOKENS_CAPACITY = 10_000
_TERM = re.compile(r"[A-Za-z0-9._+-]{1,64}")
REPORT_ATTEMPTS = 3
# How long the output side may take to send the rest and `exited` once input found the
# command ended.
OUTPUT_DRAIN_SECONDS = 5.0


class ExecRefused(Exception):
    """Why a session was not started: `code` and message go to the client."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class SpentTokens:
    """The `jti`s of exec tokens already used, each kept until its token's `exp`
    (after which the token is refused anyway). At most `capacity` are kept; while
    that many unexpired ones are held, new sessions are refused."""

    def __init__(self, capacity: int = SPENT_TOKENS_CAPACITY) -> None:
        self.capacity = capacity
        self._expiry: dict[str, float] = {}
        self._by_expiry: list[tuple[float, str]] = []

    def __len__(self) -> int:
        return len(self._expiry)

    def claim(self, token: ServerToken, now: float | None = None) -> None:
        """Mark the token used. ExecRefused when it was used before or the set is full."""
        current = time.time() if now is None else now
        while self._by_expiry and self._by_expiry[0][0] <= current:
            _, token_id = heapq.heappop(self._by_expiry)
            self._expiry.pop(token_id, None)
        if token.token_id in self._expiry:
            raise ExecRefused("token_used", "this exec token was already used")
        if len(self._expiry) >= self.capacity:
            raise ExecRefused("busy", "too many exec sessions were opened lately; retry")
        self._expiry[token.token_id] = token.expires_at
        heapq.heappush(self._by_expiry, (token.expires_at, token.token_id))


@dataclass(frozen=True, slots=True)
class ExecRequest:
    """The first client frame, checked: the verified token and the TTY wanted."""

    token: ServerToken
    command: list[str]
    height: int
    width: int
    term: str


def parse_size(value: Any) -> tuple[int, int]:
    """(height, width) from `{"height": H, "width": W}`, each 1..1000."""
    if not isinstance(value, dict):
        raise ValueError("tty_size must be an object")
    sides = (value.get("height"), value.get("width"))
    checked = [side for side in sides if type(side) is int and 1 <= side <= MAX_TTY_SIDE]
    if len(checked) != 2:
        raise ValueError(f"tty_size height and width must be integers in 1..{MAX_TTY_SIDE}")
    return checked[0], checked[1]


def output_frame(data: bytes) -> str:
    return json.dumps({"stdout": {"data": base64.b64encode(data).decode()}})


def error_frame(code: str, message: str) -> str:
    return json.dumps({"error": {"code": code, "message": message}})


class ExecSockets:
    """Accepts exec sockets through the shared gate (:mod:`agent.ws.gate`: Origin, the
    server's cap, the client address's unauthenticated sockets, tokens of scope `exec`
    with permission `exec`), then runs one :class:`ExecSession` per socket."""

    def __init__(
        self,
        limits: Console,
        identity: NodeIdentity,
        supervisor: Supervisor,
        started_at: float,
        control_plane: ControlPlane | None,
    ) -> None:
        self.limits, self.supervisor = limits, supervisor
        self.control_plane = control_plane
        self.spent = SpentTokens()
        self.gate = SocketGate(
            "exec", limits, identity, supervisor, started_at,
            what="exec sockets", permission=EXEC_PERMISSION,
        )  # fmt: skip

    async def handle(self, request: web.Request) -> web.StreamResponse:
        async with self.gate.admitted(request, max_message_bytes=MAX_MESSAGE_BYTES) as ws:
            server_id, address = request.match_info["server_id"], request.remote or ""
            await ExecSession(self, ws, server_id, address).run()
        return ws

    async def close_all(self) -> None:
        await self.gate.close_all()


def _command_ended(incoming: asyncio.Task[bool]) -> bool:
    """Whether the input side stopped because the command had ended."""
    return (
        incoming.done()
        and not incoming.cancelled()
        and incoming.exception() is None
        and (incoming.result())
    )


class ExecSession:
    """One exec over one socket: authenticate, start the command, bridge it, say how
    it ended, report that to the control plane."""

    def __init__(
        self, owner: ExecSockets, ws: web.WebSocketResponse, server_id: str, address: str
    ) -> None:
        self.owner, self.ws, self.server_id, self.address = owner, ws, server_id, address
        self.started_at: float | None = None
        self.exit_code: int | None = None
        self.reason = "failed: no command was started"

    async def run(self) -> None:
        token: ServerToken | None = None
        try:
            request = await self._authenticate()
            token = request.token
            process = await self._start(request)
        except ExecRefused as exc:
            await self._refuse(exc.code, str(exc))
            if token is not None:
                await self._report(token)
            return
        try:
            await self._bridge(process)
        finally:
            await process.close()
            await self._report(token)

    async def _authenticate(self) -> ExecRequest:
        try:
            async with asyncio.timeout(self.owner.limits.ws_auth_timeout_seconds):
                message = await self.ws.receive()
        except TimeoutError:
            raise ExecRefused("auth_timeout", "no auth_token frame in time") from None
        if message.type is not WSMsgType.TEXT:
            raise ExecRefused("bad_frame", "the first frame must be a JSON text frame")
        try:
            first = json.loads(message.data)
            raw_token = first["auth_token"]
            size = first.get("tty_size")
            height, width = DEFAULT_SIZE if size is None else parse_size(size)
            term = first.get("term", DEFAULT_TERM)
            if not isinstance(raw_token, str) or not isinstance(term, str):
                raise ValueError("auth_token and term must be strings")
            if not _TERM.fullmatch(term):
                raise ValueError("term must be 1-64 characters of [A-Za-z0-9._+-]")
        except (ValueError, KeyError, TypeError) as exc:
            raise ExecRefused("bad_frame", f"malformed auth frame: {exc}") from None
        try:
            token = self.owner.gate.verify(raw_token, self.server_id)
        except TokenError as exc:
            raise ExecRefused("invalid_token", str(exc)) from None
        if not self.owner.gate.authenticate(self.ws, self.address, self.server_id):
            raise ExecRefused("too_many_sockets", "too many exec sockets for this server")
        command = token.details.get("command")
        if not (isinstance(command, list) and command and all(isinstance(w, str) for w in command)):
            raise ExecRefused("invalid_token", "the token names no command")
        self.owner.spent.claim(token)
        return ExecRequest(token, list(command), height, width, term)

    async def _start(self, request: ExecRequest) -> ExecProcess:
        supervisor = self.owner.supervisor
        try:
            server = supervisor.get(self.server_id)
            process = await supervisor.runtime.open_exec(
                server.container_id,
                request.command,
                height=request.height,
                width=request.width,
                term=request.term,
            )
        except NotRunning:
            self.reason = "failed: the server is not running"
            raise ExecRefused("not_running", "the server is not running") from None
        except ContainerRuntimeError as exc:
            self.reason = f"failed: {exc}"
            raise ExecRefused("exec_failed", str(exc)) from None
        self.started_at = time.time()
        log.info("exec_started", server_id=self.server_id, session=request.token.token_id,
                 user_id=request.token.user_id, command=request.command)  # fmt: skip
        return process

    async def _bridge(self, process: ExecProcess) -> None:
        """Output until the command ends (then `exited` and a normal close), input
        until the client leaves (then the command is hung up)."""
        output = asyncio.create_task(self._pump_output(process))
        incoming = asyncio.create_task(self._pump_input(process))
        try:
            await asyncio.wait({output, incoming}, return_when=asyncio.FIRST_COMPLETED)
            if not output.done() and _command_ended(incoming):
                # Input met the ended command first: the output side still has the
                # rest of the output and the `exited` frame to send.
                await asyncio.wait({output}, timeout=OUTPUT_DRAIN_SECONDS)
        finally:
            if not output.done():
                self.reason = "disconnected"
            await cancel_and_wait(incoming)
            await cancel_and_wait(output)
        if self.reason == "disconnected":
            await process.close()
            self.exit_code = await process.exit_code()

    async def _pump_output(self, process: ExecProcess) -> None:
        try:
            while data := await process.read():
                await self.ws.send_str(output_frame(data))
        except ConnectionError:
            self.reason = "disconnected"  # the client left while output flowed
            return
        self.exit_code = await process.exit_code()
        self.reason = "exited" if self.exit_code is not None else "detached"
        result = {"exit_code": self.exit_code}
        with contextlib.suppress(ConnectionError):
            await self.ws.send_str(json.dumps({"exited": True, "result": result}))
        await self.owner.gate.close(self.ws, self.address, self.server_id, WSCloseCode.OK, "")

    async def _pump_input(self, process: ExecProcess) -> bool:
        """Client frames to the command until the client leaves (False) or a write
        finds the command ended (True)."""
        async for message in self.ws:
            if message.type is not WSMsgType.TEXT:
                if message.type is WSMsgType.ERROR:
                    return False
                continue
            try:
                await self._apply(process, json.loads(message.data))
            except (ValueError, TypeError, KeyError, binascii.Error) as exc:
                await self.ws.send_str(error_frame("bad_frame", f"malformed frame: {exc}"))
            except NotRunning:
                return True  # the output side is about to say `exited`
        return False

    async def _apply(self, process: ExecProcess, frame: Any) -> None:
        if not isinstance(frame, dict):
            raise ValueError("a frame is a JSON object")
        if "stdin" in frame:
            stdin = frame["stdin"]
            if not isinstance(stdin, dict):
                raise ValueError("stdin must be an object")
            if "data" in stdin:
                await process.write(base64.b64decode(str(stdin["data"]), validate=True))
            if stdin.get("close") is True:
                await process.write(EOF_CHARACTER)
        if "tty_size" in frame:
            await process.resize(*parse_size(frame["tty_size"]))

    async def _refuse(self, code: str, message: str) -> None:
        with contextlib.suppress(ConnectionError):
            await self.ws.send_str(error_frame(code, message))
        await self.owner.gate.close(
            self.ws, self.address, self.server_id, WSCloseCode.POLICY_VIOLATION, code
        )

    async def _report(self, token: ServerToken) -> None:
        """Tell the control plane how the session ended; retried on outages only."""
        control_plane = self.owner.control_plane
        if control_plane is None:
            return
        for attempt in range(REPORT_ATTEMPTS):
            try:
                await control_plane.exec_ended(
                    token.token_id,
                    started_at=self.started_at,
                    exit_code=self.exit_code,
                    reason=self.reason,
                )
                return
            except ControlPlaneError as exc:
                if exc.definitive or attempt + 1 == REPORT_ATTEMPTS:
                    log.warning("exec_end_not_recorded", session=token.token_id, error=str(exc))
                    return
                await asyncio.sleep(0.5 * 2**attempt)
