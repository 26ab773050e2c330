"""/v1/deployments/{id}/replicas/{ordinal}/files/...: a replica's files (docs/protocols/files.md).

Listing and small operations are relayed to the replica's agent over its HTTP port,
each call carrying a token this control plane signs with the node's secret for just
that call (scope `file-relay`, 60 seconds). Uploads and downloads never pass through
here: `upload-url` and `download-url` answer a signed URL on the agent that the client
uses directly, its token bound to that one operation (`file-upload` or
`file-download`) and that one path. Who may do what is
:func:`controlplane.api.remote.file_permissions`, the rule SFTP logins use: the owner
and admins; anyone else gets 404, and a grant without `file.write` cannot write.
"""

from __future__ import annotations

import json
import ssl
import urllib.parse
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
from aiohttp import web
from pydantic import BaseModel, Field
from sqlmodel import col, select

from common.file_operations import (
    ChangeMode,
    CompressFiles,
    DecompressFile,
    FilePath,
    MakeDirectory,
    MoveFiles,
    PullFile,
)
from common.tokens import Scope, sign_server_token
from controlplane.api.context import current_user, database, path_uuid
from controlplane.api.deployment_actions import AgentUnavailable, node_http_base
from controlplane.api.errors import Forbidden, NotFound, ValidationFailed
from controlplane.api.remote import file_permissions
from controlplane.db.tables import Deployment, Node, Replica
from controlplane.state import AGENT_HTTP_TLS

RELAY_TOKEN_TTL = 60
TRANSFER_URL_TTL = 600
RELAY_TIMEOUT = aiohttp.ClientTimeout(total=300, connect=10)
PULL_TIMEOUT = aiohttp.ClientTimeout(total=1900, connect=10)  # the agent's pull: 1800 s


class FilesQuery(BaseModel):
    """Which path of the replica's directory ("/" is the directory itself). Shorter
    than in bodies: a URL must fit aiohttp's 8 KiB request line, percent-encoded."""

    path: str = Field(default="/", min_length=1, max_length=1024)


class TransferUrl(BaseModel):
    """A signed agent URL for one upload or download, valid until `expires_at`."""

    url: str
    expires_at: datetime
    method: str


@dataclass(frozen=True, slots=True)
class ReplicaFiles:
    """The replica named by the path, its node, and what the caller may do."""

    replica: Replica
    node: Node
    user_id: str
    permissions: list[str]
    http_base: str  # the agent's HTTP port, agent_http_base
    tls: ssl.SSLContext  # checks the agent's certificate when http_base is https

    def token(self, scope: Scope, ttl: int, path: str | None = None) -> str:
        """A token for this replica; `path` binds it to one path (transfer URLs)."""
        assert self.node.secret is not None
        return sign_server_token(
            self.node.secret,
            node_id=str(self.node.id),
            user_id=self.user_id,
            server_id=str(self.replica.id),
            permissions=self.permissions,
            scope=scope,
            ttl_seconds=ttl,
            details=None if path is None else {"path": path},
        )

    def url(self, endpoint: str, query: dict[str, str]) -> str:
        query_text = urllib.parse.urlencode(query)
        return f"{self.http_base}/api/servers/{self.replica.id}/files/{endpoint}?{query_text}"


async def replica_files(request: web.Request, *, write: bool) -> ReplicaFiles:
    """The caller's access to the files of the replica in the path (404 for others)."""
    user = current_user(request)
    try:
        ordinal = int(request.match_info["ordinal"])
    except ValueError:
        raise NotFound("no such replica", code="replica_not_found") from None
    async with database(request).session() as session:
        deployment = await session.get(Deployment, path_uuid(request))
        permissions = file_permissions(user, deployment) if deployment else []
        if deployment is None or not permissions:
            raise NotFound("no such deployment", code="deployment_not_found")
        replica = (
            await session.exec(
                select(Replica).where(
                    col(Replica.deployment_id) == deployment.id, col(Replica.ordinal) == ordinal
                )
            )
        ).first()
        if replica is None or replica.node_id is None:
            raise NotFound("no such replica", code="replica_not_found")
        node = await session.get(Node, replica.node_id)
    if write and "file.write" not in permissions:
        raise Forbidden("this grant is read-only", code="read_only")
    http_base = "" if node is None else node_http_base(request, node)
    if node is None or not node.secret or not http_base:
        raise AgentUnavailable("the replica's node has no HTTP address")
    tls = request.app[AGENT_HTTP_TLS]
    return ReplicaFiles(replica, node, str(user.id), permissions, http_base, tls)


async def _relay(
    files: ReplicaFiles,
    method: str,
    endpoint: str,
    *,
    query: dict[str, str] | None = None,
    body: BaseModel | None = None,
    limits: aiohttp.ClientTimeout = RELAY_TIMEOUT,
) -> web.Response:
    """Call the agent's file API and answer what it answered (its errors included)."""
    # Its own scope: a transfer URL's token (bound to one upload or download) is
    # never good for these calls, nor theirs for a transfer.
    headers = {"Authorization": f"Bearer {files.token('file-relay', RELAY_TOKEN_TTL)}"}
    url = files.url(endpoint, query or {})
    payload = body.model_dump() if body is not None else None
    try:
        async with (
            aiohttp.ClientSession(timeout=limits) as http,
            http.request(method, url, json=payload, headers=headers, ssl=files.tls) as response,
        ):
            text = await response.text()
            status = response.status
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise AgentUnavailable(f"the replica's agent cannot be reached: {exc}") from exc
    try:
        answer: Any = json.loads(text)
    except json.JSONDecodeError as exc:
        raise AgentUnavailable("the agent answered something that is not JSON") from exc
    return web.json_response(answer, status=status)


async def list_files(request: web.Request, query: FilesQuery) -> web.StreamResponse:
    """The entries of a directory: name, type, size, mode, mtime, link target."""
    files = await replica_files(request, write=False)
    return await _relay(files, "GET", "list", query={"path": query.path})


async def stat_file(request: web.Request, query: FilesQuery) -> web.StreamResponse:
    """One entry (a symlink is shown as itself, with its target)."""
    files = await replica_files(request, write=False)
    return await _relay(files, "GET", "stat", query={"path": query.path})


async def _write(
    request: web.Request,
    endpoint: str,
    body: BaseModel,
    limits: aiohttp.ClientTimeout = RELAY_TIMEOUT,
) -> web.StreamResponse:
    files = await replica_files(request, write=True)
    return await _relay(files, "POST", endpoint, body=body, limits=limits)


async def make_directory(request: web.Request, body: MakeDirectory) -> web.StreamResponse:
    """Make a directory (with its parents when `parents`)."""
    return await _write(request, "mkdir", body)


async def rename_file(request: web.Request, body: MoveFiles) -> web.StreamResponse:
    """Move or rename an entry; an existing target is a 409."""
    return await _write(request, "rename", body)


async def copy_file(request: web.Request, body: MoveFiles) -> web.StreamResponse:
    """Copy a file, a symlink or a directory tree; an existing target is a 409."""
    return await _write(request, "copy", body)


async def delete_file(request: web.Request, body: FilePath) -> web.StreamResponse:
    """Remove an entry, a directory with everything beneath it."""
    return await _write(request, "delete", body)


async def change_mode(request: web.Request, body: ChangeMode) -> web.StreamResponse:
    """Set permission bits (setuid and setgid are dropped)."""
    return await _write(request, "chmod", body)


async def compress_files(request: web.Request, body: CompressFiles) -> web.StreamResponse:
    """Write entries into a new tar.gz or zip archive inside the directory."""
    return await _write(request, "compress", body)


async def decompress_file(request: web.Request, body: DecompressFile) -> web.StreamResponse:
    """Extract a tar, tar.gz or zip archive (caps and skipped members: see the docs)."""
    return await _write(request, "decompress", body)


async def pull_file(request: web.Request, body: PullFile) -> web.StreamResponse:
    """Fetch a URL into the replica's directory, on its agent, through the guarded
    outbound client (private and loopback addresses refused, redirects checked)."""
    return await _write(request, "pull", body, PULL_TIMEOUT)


def _transfer(
    files: ReplicaFiles, endpoint: str, scope: Scope, path: str, method: str
) -> TransferUrl:
    if "\0" in path:
        raise ValidationFailed("path holds a NUL")
    token = files.token(scope, TRANSFER_URL_TTL, path)
    return TransferUrl(
        url=files.url(endpoint, {"path": path, "token": token}),
        expires_at=datetime.now(UTC) + timedelta(seconds=TRANSFER_URL_TTL),
        method=method,
    )


async def upload_url(request: web.Request, body: FilePath) -> TransferUrl:
    """A signed agent URL to upload one file: `PUT` the whole file, or `HEAD` for the
    stored size and `PATCH ?offset=<size>` the rest to resume."""
    files = await replica_files(request, write=True)
    return _transfer(files, "upload", "file-upload", body.path, "PUT")


async def download_url(request: web.Request, query: FilesQuery) -> TransferUrl:
    """A signed agent URL to download one file (`GET`, with Range)."""
    files = await replica_files(request, write=False)
    return _transfer(files, "download", "file-download", query.path, "GET")
