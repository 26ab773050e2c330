"""`encedeus exec APP [-- CMD...]` and `encedeus console APP`: the terminal attached to
the agent's exec or console WebSocket (docs/protocols/exec.md, console.md).

The control plane hands out the URL and a token; the socket goes straight to the
node's agent. One select() loop per session waits on the socket, stdin and resize
notices, so nothing here needs threads.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import selectors
import sys
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from controlplane.client.api import ApiClient, ClientError
from controlplane.client.commands import (
    add_command,
    add_container_command_flags,
    client_for,
    container_command,
    resolve_deployment,
)
from controlplane.client.terminal import (
    LEAVE_KEY,
    drain,
    line_mode_with_leave_key,
    raw_mode,
    resize_notices,
    terminal_size,
    write_out,
)
from controlplane.client.websocket import WebSocket, WebSocketError, connect

STDIN = 0


def _open(url: str) -> WebSocket:
    try:
        return connect(url)
    except WebSocketError as exc:
        raise ClientError(str(exc), status=exc.status) from None


def _size_frame(fd: int) -> dict[str, int]:
    rows, columns = terminal_size(fd)
    return {"height": rows, "width": columns}


def select_loop(
    ws: WebSocket, selector: selectors.BaseSelector, handle: Callable[[str], bool]
) -> None:
    """Call `handle` with the name of each ready source (the name registered as the
    selector key's data) until it returns False; then close the selector."""
    try:
        while True:
            ready = ["socket"] if ws.has_buffered() else [
                key.data for key, _ in selector.select()
            ]  # fmt: skip
            for source in ready:
                if not handle(source):
                    return
    finally:
        selector.close()


def exec_into(args: argparse.Namespace) -> int:
    """Run a command (default /bin/sh) in a replica's container with this terminal;
    exit with the command's exit code."""
    client = client_for(args)
    deployment = resolve_deployment(client, args.deployment)
    command = container_command(args) or ["/bin/sh"]
    access = client.call(
        "GET",
        f"/v1/deployments/{deployment['id']}/replicas/{args.replica}/exec",
        query={"command": json.dumps(command)},
    )
    ws = _open(access["url"])
    try:
        ws.send_json(
            {
                "auth_token": access["token"],
                "tty_size": _size_frame(STDIN),
                "term": os.environ.get("TERM") or "xterm",
            }
        )
        with raw_mode(STDIN), resize_notices() as resized:
            return ExecLoop(ws, resized).run()
    except WebSocketError as exc:
        raise ClientError(str(exc)) from None
    finally:
        ws.close()


class ExecLoop:
    """Stdin and resizes to the socket, output to stdout, until `exited`."""

    def __init__(self, ws: WebSocket, resized: int) -> None:
        self.ws, self.resized = ws, resized
        self.selector = selectors.DefaultSelector()
        self.selector.register(ws, selectors.EVENT_READ, "socket")
        self.selector.register(resized, selectors.EVENT_READ, "resize")
        try:
            self.selector.register(STDIN, selectors.EVENT_READ, "stdin")
        except (PermissionError, ValueError, OSError):  # /dev/null, a regular file
            self._send_all_input()  # never blocks for long: it is read to its end

    def _send_all_input(self) -> None:
        """Send an unselectable stdin (a file, /dev/null) whole, then its end."""
        while data := os.read(STDIN, 4096):
            self.ws.send_json({"stdin": {"data": base64.b64encode(data).decode()}})
        self.ws.send_json({"stdin": {"close": True}})

    def run(self) -> int:
        """The command's exit code (0-255)."""
        exit_code: int | None = None

        def handle(source: str) -> bool:
            nonlocal exit_code
            exit_code = self._handle(source)
            return exit_code is None

        select_loop(self.ws, self.selector, handle)
        assert exit_code is not None
        return exit_code

    def _handle(self, source: str) -> int | None:
        if source == "resize":
            drain(self.resized)
            self.ws.send_json({"tty_size": _size_frame(STDIN)})
        elif source == "stdin":
            data = os.read(STDIN, 4096)
            if data:
                self.ws.send_json({"stdin": {"data": base64.b64encode(data).decode()}})
            else:  # piped input ended: say so once, then only listen
                self.ws.send_json({"stdin": {"close": True}})
                self.selector.unregister(STDIN)
        else:
            return self._receive()
        return None

    def _receive(self) -> int | None:
        message = self.ws.receive()
        if message is None:
            raise ClientError(f"the session ended without an exit code ({self.ws.close_code})")
        frame: dict[str, Any] = message.json()
        if "stdout" in frame:
            write_out(base64.b64decode(frame["stdout"]["data"]))
        if "error" in frame:
            raise ClientError(f"exec refused: {frame['error'].get('message', frame['error'])}")
        if frame.get("exited"):
            code = frame.get("result", {}).get("exit_code")
            return int(code) & 0xFF if code is not None else 1
        return None


def console(args: argparse.Namespace) -> int:
    """Attach to a replica's console: history, live output, lines typed become
    commands; Ctrl-] (or end of input) leaves, and the server keeps running."""
    client = client_for(args)
    deployment = resolve_deployment(client, args.deployment)
    access = _console_access(client, deployment["id"], args.replica)
    ws = _open(access["url"])
    try:
        ws.send_json({"event": "auth", "args": [access["token"]]})
        with line_mode_with_leave_key(STDIN):
            ConsoleLoop(ws, client, deployment["id"], args.replica).run()
    except WebSocketError as exc:
        raise ClientError(str(exc)) from None
    finally:
        ws.close()
    return 0


def _console_access(client: ApiClient, deployment_id: str, replica: int) -> dict[str, Any]:
    path = f"/v1/deployments/{quote(deployment_id)}/console"
    answer: dict[str, Any] = client.call("GET", path, query={"replica": replica})
    return answer


class ConsoleLoop:
    """Console frames to stdout (output) and stderr (status, errors); typed lines to
    `send command`; a fresh token on `token expiring`."""

    def __init__(self, ws: WebSocket, client: ApiClient, deployment_id: str, replica: int) -> None:
        self.ws, self.client = ws, client
        self.deployment_id, self.replica = deployment_id, replica
        self.pending = b""  # typed bytes not yet ended by a newline
        self.selector = selectors.DefaultSelector()
        self.selector.register(ws, selectors.EVENT_READ, "socket")
        self.selector.register(STDIN, selectors.EVENT_READ, "stdin")

    def run(self) -> None:
        select_loop(self.ws, self.selector, self._handle)

    def _handle(self, source: str) -> bool:
        """Handle one ready source; False when the session is over."""
        if source == "stdin":
            return self._typed(os.read(STDIN, 4096))
        message = self.ws.receive()
        if message is None:
            raise ClientError(f"the console closed the connection ({self.ws.close_code})")
        self._show(message.json())
        return True

    def _typed(self, data: bytes) -> bool:
        """Send each whole line typed; False on Ctrl-] (a half-typed line is dropped)
        or at the end of input (what is left is sent as a last line)."""
        leaving = not data or LEAVE_KEY in data
        if LEAVE_KEY in data:
            head, newline, _ = data.split(LEAVE_KEY, 1)[0].rpartition(b"\n")
            data = head + newline  # whole lines only
        elif not data and self.pending:
            data = b"\n"
        self.pending += data
        *lines, self.pending = self.pending.split(b"\n")
        for line in lines:
            text = line.decode(errors="replace").rstrip("\r")
            self.ws.send_json({"event": "send command", "args": [text]})
        return not leaving

    def _show(self, frame: dict[str, Any]) -> None:
        event, frame_args = frame.get("event"), frame.get("args") or []
        if event == "console output":
            write_out(f"{frame_args[0]}\n".encode())
        elif event == "status":
            _note(f"[status: {frame_args[0]}]")
        elif event in ("jwt error", "daemon error"):
            _note(f"[{event}: {frame_args[0] if frame_args else ''}]")
        elif event in ("token expiring", "token expired"):
            fresh = _console_access(self.client, self.deployment_id, self.replica)
            self.ws.send_json({"event": "auth", "args": [fresh["token"]]})


def _note(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def add_commands(subparsers: Any) -> None:
    """Add `exec` and `console`."""
    parser = add_command(
        subparsers, "exec", exec_into, "run a command (default: a shell) in a replica's container"
    )
    parser.add_argument("deployment", help="app name or id")
    parser.add_argument("--replica", type=int, default=0, help="replica ordinal (default 0)")
    add_container_command_flags(parser)

    parser = add_command(
        subparsers, "console", console, "attach to a replica's console (Ctrl-] leaves)"
    )
    parser.add_argument("deployment", help="app name or id")
    parser.add_argument("--replica", type=int, default=0, help="replica ordinal (default 0)")
