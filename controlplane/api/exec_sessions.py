"""Exec into a replica's container: the token that opens the agent's exec socket, the
record of every session, and the agent's report of how one ended.

- `GET /v1/deployments/{id}/replicas/{ordinal}/exec?command=[...]` (owner or admin)
- `GET /v1/deployments/{id}/exec-sessions` (owner or admin), newest first
- `POST /v1/remote/exec-sessions/{id}/end` (node secret)

See docs/protocols/exec.md. The session row is written before the token is handed
out, so no command runs unrecorded; its id is the token's single-use `jti`.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import update
from sqlmodel import col, select

from common.tokens import sign_server_token
from controlplane.api.context import current_user, database, path_uuid
from controlplane.api.deployment_actions import agent_socket_url, replica_and_node
from controlplane.api.errors import Conflict, NotFound
from controlplane.api.pagination import PageQuery, Pagination, fetch_page
from controlplane.api.remote import calling_node
from controlplane.api.schemas import Request
from controlplane.db.tables import Deployment, ExecSession

EXEC_TOKEN_TTL = 300
DEFAULT_COMMAND = ["/bin/sh"]
MAX_WORDS = 64
MAX_COMMAND_CHARS = 4096
EXEC_PERMISSION = "exec"
# Epoch seconds an agent may report as a start: after 2020, before 2100.
_EARLIEST, _LATEST = 1_577_836_800.0, 4_102_444_800.0
_NOT_AN_ARRAY = 'command must be a JSON array of strings, e.g. ["ls","-l"]'


class ExecQuery(BaseModel):
    """`command`: a JSON-encoded array of strings (as Nomad's exec takes it)."""

    model_config = ConfigDict(extra="ignore")

    command: list[str] = Field(
        default_factory=lambda: list(DEFAULT_COMMAND),
        description='JSON array, e.g. ["ls","-l"]; default ["/bin/sh"]',
    )

    @field_validator("command", mode="before")
    @classmethod
    def _json_array(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                raise ValueError(_NOT_AN_ARRAY) from None
        return value

    @field_validator("command")
    @classmethod
    def _reasonable(cls, words: list[str]) -> list[str]:
        if not 1 <= len(words) <= MAX_WORDS:
            raise ValueError(f"command must have 1 to {MAX_WORDS} words")
        if not words[0] or sum(len(w) for w in words) > MAX_COMMAND_CHARS:
            raise ValueError(f"command must name a program, {MAX_COMMAND_CHARS} characters at most")
        if any("\x00" in w for w in words):
            raise ValueError("command words cannot contain NUL")
        return words


class ExecAccess(BaseModel):
    """Where to connect for the session, with its single-use token."""

    url: str
    token: str
    expires_at: datetime
    session_id: uuid.UUID
    server_id: str
    node_id: str
    command: list[str]


class ExecSessionRecord(BaseModel):
    """One recorded exec session."""

    id: uuid.UUID
    deployment_id: uuid.UUID
    replica: int
    server_id: uuid.UUID
    node_id: uuid.UUID | None
    user_id: uuid.UUID | None
    username: str
    command: list[str]
    created_at: datetime
    started_at: datetime | None
    ended_at: datetime | None
    exit_code: int | None
    end_reason: str


class ExecSessionList(BaseModel):
    """A page of a deployment's exec sessions, newest first."""

    exec_sessions: list[ExecSessionRecord]
    pagination: Pagination


class ExecEnd(Request):
    """How a session ended, as its agent saw it."""

    started_at: float | None = Field(default=None, ge=_EARLIEST, le=_LATEST)
    exit_code: int | None = Field(default=None, ge=-(2**31), le=2**31 - 1)
    reason: str = Field(min_length=1, max_length=200)


class ExecEnded(BaseModel):
    """The recorded end."""

    id: uuid.UUID
    ended_at: datetime


async def exec_deployment(request: web.Request) -> Deployment:
    """The deployment named by the path, if the caller owns it or is an admin; 404
    otherwise (also for other owners', as for every deployment route)."""
    user = current_user(request)
    async with database(request).session() as session:
        deployment = await session.get(Deployment, path_uuid(request))
    if deployment is None or (deployment.user_id != user.id and not user.is_admin):
        raise NotFound("no such deployment", code="deployment_not_found")
    return deployment


def _ordinal(request: web.Request) -> int:
    text = request.match_info["ordinal"]
    if not text.isdigit() or len(text) > 6:
        raise NotFound("no such replica", code="replica_not_found")
    return int(text)


async def exec_access(request: web.Request, query: ExecQuery) -> ExecAccess:
    """Record an exec session into one replica and hand out its URL and token."""
    deployment = await exec_deployment(request)
    replica, node = await replica_and_node(request, deployment, _ordinal(request))
    user = current_user(request)
    record = ExecSession(
        deployment_id=deployment.id,
        replica=replica.ordinal,
        server_id=replica.id,
        node_id=node.id,
        user_id=user.id,
        username=user.username,
        command=query.command,
    )
    async with database(request).transaction() as session:
        session.add(record)
    token = sign_server_token(
        node.secret or "",
        node_id=str(node.id),
        user_id=str(user.id),
        server_id=str(replica.id),
        permissions=[EXEC_PERMISSION],
        scope="exec",
        ttl_seconds=EXEC_TOKEN_TTL,
        token_id=str(record.id),
        details={"command": query.command},
    )
    return ExecAccess(
        url=agent_socket_url(request, node, f"/api/servers/{replica.id}/exec"),
        token=token,
        expires_at=record.created_at + timedelta(seconds=EXEC_TOKEN_TTL),
        session_id=record.id,
        server_id=str(replica.id),
        node_id=str(node.id),
        command=query.command,
    )


async def list_exec_sessions(request: web.Request, query: PageQuery) -> ExecSessionList:
    """The deployment's exec sessions, newest first."""
    deployment = await exec_deployment(request)
    statement = (
        select(ExecSession)
        .where(col(ExecSession.deployment_id) == deployment.id)
        .order_by(col(ExecSession.created_at).desc(), col(ExecSession.id))
    )
    async with database(request).session() as session:
        rows, pagination = await fetch_page(session, statement, query)
    return ExecSessionList(
        exec_sessions=[ExecSessionRecord.model_validate(r, from_attributes=True) for r in rows],
        pagination=pagination,
    )


async def end_exec_session(request: web.Request, body: ExecEnd) -> ExecEnded:
    """Record the end of one of the calling node's sessions, once."""
    node = await calling_node(request)
    session_id = path_uuid(request)
    ended_at = datetime.now(UTC)
    started_at = None if body.started_at is None else datetime.fromtimestamp(body.started_at, UTC)
    async with database(request).transaction() as session:
        record = await session.get(ExecSession, session_id)
        if record is None or record.node_id != node.id:
            raise NotFound("no such exec session on this node", code="exec_session_not_found")
        # Conditional, so that two reports at once cannot both be recorded.
        changed = await session.exec(
            update(ExecSession)
            .where(col(ExecSession.id) == session_id, col(ExecSession.ended_at).is_(None))
            .values(
                ended_at=ended_at,
                started_at=started_at,
                exit_code=body.exit_code,
                end_reason=body.reason,
            )
        )
        if changed.rowcount != 1:
            raise Conflict("this exec session's end is already recorded", code="exec_session_ended")
    return ExecEnded(id=session_id, ended_at=ended_at)
