"""/v1/deployments/{id}/logs|logs/stream: every replica's log lines, interleaved as
they arrive from the agents (a JSON list, NDJSON while following, or a WebSocket)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from common.cancellation import cancel_and_wait
from controlplane.agents import AgentError
from controlplane.api.authentication import CURRENT_USER
from controlplane.api.context import authenticator
from controlplane.api.deployment_actions import agent_for, deployment_replicas
from controlplane.api.deployment_schemas import LogsQuery
from controlplane.api.deployments import owned_deployment
from controlplane.api.errors import NotFound
from controlplane.api.websocket_auth import (
    authenticate_websocket,
    close_when_credential_ends,
    refuse_websocket,
)
from controlplane.db.tables import Deployment, Replica
from protos import agent_pb2 as pb

#: Close code of a logs WebSocket whose deployment the caller does not own (or that
#: does not exist): 4000 + the HTTP status, like 4401.
CLOSE_NOT_FOUND = 4404


def _entry(replica: Replica, line: pb.LogLine) -> dict[str, Any]:
    return {
        "timestamp": datetime.fromtimestamp(line.time_ms / 1000, UTC).isoformat(),
        "level": "error" if line.stream == "stderr" else "info",
        "message": line.text,
        "source": line.stream,
        "replica_id": str(replica.id),
    }


async def _merged_logs(
    request: web.Request, deployment: Deployment, query: LogsQuery
) -> AsyncIterator[dict[str, Any]]:
    """Every replica's lines (tail, then followed), interleaved as they arrive."""
    queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(maxsize=1000)
    replicas = await deployment_replicas(request, deployment)

    async def pump(replica: Replica) -> None:
        client = agent_for(request, replica)
        if client is not None:
            with contextlib.suppress(AgentError):
                async for line in client.get_logs(
                    str(replica.id), tail=query.tail, follow=query.follow
                ):
                    await queue.put(_entry(replica, line))
        await queue.put(None)

    pumps = [asyncio.create_task(pump(r)) for r in replicas]
    try:
        remaining = len(pumps)
        while remaining:
            item = await queue.get()
            if item is None:
                remaining -= 1
            else:
                yield item
    finally:
        for task in pumps:
            task.cancel()
        await asyncio.gather(*pumps, return_exceptions=True)


async def deployment_logs(request: web.Request, query: LogsQuery) -> web.StreamResponse:
    """Without follow: `{"logs": [...]}`. With follow: NDJSON, one entry per line,
    streamed until the client disconnects."""
    deployment = await owned_deployment(request)
    if not query.follow:
        entries = [e async for e in _merged_logs(request, deployment, query)]
        entries.sort(key=lambda e: str(e["timestamp"]))
        return web.json_response({"logs": entries})
    response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
    await response.prepare(request)
    try:
        async for entry in _merged_logs(request, deployment, query):
            await response.write(json.dumps(entry).encode() + b"\n")
        await response.write_eof()
    except ConnectionError:
        pass  # the client stopped following (Ctrl-C): the normal end of a follow
    return response


async def _socket_deployment(
    request: web.Request, socket: web.WebSocketResponse
) -> Deployment | None:
    """First-message authentication, then the ownership check; None once refused."""
    user = await authenticate_websocket(request, socket, authenticator(request).authenticate)
    if user is None:
        return None
    request[CURRENT_USER] = user
    try:
        return await owned_deployment(request)
    except NotFound as exc:
        # The same frame for a missing deployment and another account's one.
        await refuse_websocket(socket, exc.message, code=exc.code, close_code=CLOSE_NOT_FOUND)
        return None


async def deployment_logs_stream(request: web.Request, query: LogsQuery) -> web.StreamResponse:
    """WebSocket: each log entry as one JSON text frame (tail first, then followed).

    With a Bearer header, a bad credential is a 401 and an unknown deployment a 404
    before the upgrade. Without one, the first message must be `authenticate` (see
    :mod:`controlplane.api.websocket_auth`); an unknown deployment is then an error
    frame `deployment_not_found` and close code 4404."""
    socket = web.WebSocketResponse(heartbeat=30)
    if CURRENT_USER in request:
        deployment: Deployment | None = await owned_deployment(request)
        await socket.prepare(request)
    else:
        await socket.prepare(request)
        deployment = await _socket_deployment(request, socket)
    if deployment is None:
        return socket
    follow = LogsQuery(tail=query.tail, follow=True)
    found = deployment

    async def forward() -> None:
        async for entry in _merged_logs(request, found, follow):
            await socket.send_json(entry)

    sender = asyncio.create_task(forward())
    guard = asyncio.create_task(
        close_when_credential_ends(request, socket, authenticator(request).authenticate)
    )
    try:
        async for _message in socket:
            pass  # the client only listens; reading notices its close
    finally:
        await cancel_and_wait(sender, guard)
        await socket.close()
    return socket
