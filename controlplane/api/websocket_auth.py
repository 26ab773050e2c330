"""Authenticating WebSocket connections, which browsers open without custom headers.

A client proves who it is either with an `Authorization: Bearer <token>` header on
the upgrade request or, within :data:`AUTH_TIMEOUT` seconds of the upgrade, with a
first text message `{"type": "authenticate", "token": "<access token or API key>"}`
(seed 002's `{"command": "authenticate", "data": {"token": ...}, "state": ...}` is
accepted too). Success is answered with `{"type": "authenticated", "user_id": ...}`
(plus `command` and `state` echoed for a seed 002 message, see :func:`seed_echo`);
refusal with the error frame
`{"type": "error", "error": {"code": "unauthorized", "message": ...}}` followed by
close code :data:`CLOSE_UNAUTHORIZED` (4401).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import WSMsgType, web

from common.json_input import load_untrusted_json
from controlplane.api.authentication import CURRENT_USER, CurrentUser, bearer_token
from controlplane.api.errors import ApiError
from controlplane.state import AUTHENTICATOR

AUTH_TIMEOUT = 10.0
CLOSE_UNAUTHORIZED = 4401
# How often an open socket's credential is checked again: revoking an API key, logging
# out, changing the password or deactivating the account ends the sockets it opened
# within this time, and so does an access token's expiry.
REVALIDATE_SECONDS = 30.0
SOCKET_TOKEN = web.RequestKey("socket_token", str)

#: Turns a bearer credential into the caller, or raises an ApiError (401).
Authenticate = Callable[[str], Awaitable[CurrentUser]]


def error_frame(code: str, message: str) -> dict[str, Any]:
    """The envelope every WebSocket error is sent in."""
    return {"type": "error", "error": {"code": code, "message": message}}


async def refuse_websocket(
    socket: web.WebSocketResponse,
    message: str,
    *,
    code: str = "unauthorized",
    close_code: int = CLOSE_UNAUTHORIZED,
    echo: dict[str, Any] | None = None,
) -> None:
    """Send one error frame (plus `echo`, see :func:`seed_echo`), then close the
    connection with `close_code`."""
    await socket.send_json({**error_frame(code, message), **(echo or {})})
    await socket.close(code=close_code, message=code.encode())


def seed_echo(message: dict[str, Any]) -> dict[str, Any]:
    """What a reply repeats of a seed 002 message (one that names its `command`): the
    `command` and the client's `state`, so the client can match reply to request."""
    command = message.get("command")
    if not isinstance(command, str) or "type" in message:
        return {}
    return {"command": command, "state": message.get("state")}


def _first_message_token(message: object) -> str | None:
    if not isinstance(message, dict):
        return None
    kind = message.get("type") or message.get("command")
    if kind != "authenticate":
        return None
    data = message.get("data")
    token = message.get("token") or (data.get("token") if isinstance(data, dict) else None)
    return token if isinstance(token, str) and token else None


async def _first_message(socket: web.WebSocketResponse) -> tuple[str | None, dict[str, Any]]:
    """(the token of a first `authenticate` message, the message); the socket has been
    refused when the token is None."""
    try:
        first = await socket.receive(timeout=AUTH_TIMEOUT)
    except TimeoutError:
        first = None
    if first is None or first.type != WSMsgType.TEXT:
        await refuse_websocket(socket, "authenticate first")
        return None, {}
    try:
        message = load_untrusted_json(first.data)
    except ValueError:
        message = None
    first_message = message if isinstance(message, dict) else {}
    token = _first_message_token(message)
    if token is None:
        await refuse_websocket(
            socket,
            "the first message must be authenticate with a token",
            echo=seed_echo(first_message),
        )
    return token, first_message


async def authenticate_websocket(
    request: web.Request, socket: web.WebSocketResponse, authenticate: Authenticate
) -> CurrentUser | None:
    """The caller of a prepared (upgraded) `socket`, by Bearer header or first message.

    On success the client has been sent `{"type": "authenticated", "user_id"}`. On
    refusal (no credential in time, malformed first message, bad or expired token)
    the client has been sent an `unauthorized` error frame, the socket is closed with
    4401, and None is returned: the caller must then just return the socket.
    """
    token = bearer_token(request)
    first: dict[str, Any] = {}
    if token is None:
        token, first = await _first_message(socket)
        if token is None:
            return None
    try:
        user = await authenticate(token)
    except ApiError as exc:
        await refuse_websocket(socket, exc.message, echo=seed_echo(first))
        return None
    request[SOCKET_TOKEN] = token
    await socket.send_json({"type": "authenticated", "user_id": str(user.id), **seed_echo(first)})
    return user


async def close_when_credential_ends(
    request: web.Request, socket: web.WebSocketResponse, authenticate: Authenticate
) -> None:
    """Check the socket's credential every :data:`REVALIDATE_SECONDS`; once it no
    longer authenticates, refuse the socket (error frame, close 4401). Run it as a task
    beside the socket's work and cancel it when the socket ends."""
    token = request.get(SOCKET_TOKEN) or bearer_token(request)
    if token is None:
        return
    while not socket.closed:
        await asyncio.sleep(REVALIDATE_SECONDS)
        try:
            await authenticate(token)
        except ApiError as exc:
            await refuse_websocket(socket, f"credential no longer valid: {exc.message}")
            return


class _HeaderOrFirstMessage:
    """A Bearer header, when present, is checked before the upgrade exactly as for
    USER routes (401 on a bad one, caller attached to the request); without one the
    request is admitted and the handler must call :func:`authenticate_websocket`."""

    name = "user"
    security: list[dict[str, list[str]]] = [{"bearer": []}, {}]

    async def authorize(self, request: web.Request) -> None:
        token = bearer_token(request)
        if token is not None:
            request[CURRENT_USER] = await request.app[AUTHENTICATOR].authenticate(token)


#: WebSocket routes for signed-in accounts: Bearer header, or first-message auth.
SOCKET_USER = _HeaderOrFirstMessage()
