"""The agent's HTTP file API: `/api/servers/{server_id}/files/...` (docs/protocols/files.md).

`list`, `stat` and the small operations take the control plane's `file-relay` token
(`file.write` to write); `download` and `upload` take a signed URL's `file-download` /
`file-upload` token, valid for that operation on the one path it names
(:mod:`agent.files.access`). Every operation runs in a worker thread on a
:class:`ConfinedTree` of the server's directory, the one SFTP uses; writes are charged
to the server's :class:`DiskQuota` (the class SFTP uses) before they happen and new
entries belong to the container's user (:func:`agent.files.ownership.file_owner`).
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from agent.config import NodeIdentity
from agent.files.access import Access, FileApiError, authorize, os_error_answer
from agent.files.archives import ArchiveRefused, ExtractLimits, compress, extract
from agent.files.download import send_file
from agent.files.operations import ServerFiles
from agent.files.pull import PULL_POLICY, fetch_for_pull, install_pulled
from agent.files.transfer import receive_body
from agent.sftp.quota import DiskQuota
from agent.sftp.tree import ConfinedTree
from common.file_operations import (
    ChangeMode,
    CompressFiles,
    DecompressFile,
    FilePath,
    MakeDirectory,
    MoveFiles,
    PullFile,
)
from common.outbound import OutboundError, OutboundPolicy, OutboundRefused, OutboundTooLarge

M = TypeVar("M", bound=BaseModel)
ROUTE = "/api/servers/{server_id}/files"


class FileApi:
    """The file API of every server directory under `<data_dir>/volumes` on this node."""

    def __init__(
        self,
        identity: NodeIdentity,
        data_dir: Path,
        started_at: float,
        *,
        owner_of: Callable[[str], tuple[int, int] | None],
        disk_limit_of: Callable[[str], int],
        volume_of: Callable[[str], str] = lambda server_id: server_id,
        extract_limits: ExtractLimits | None = None,
        pull_policy: OutboundPolicy = PULL_POLICY,
    ) -> None:
        self._identity, self._started_at = identity, started_at
        self._volumes = data_dir / "volumes"
        self._owner_of, self._disk_limit_of = owner_of, disk_limit_of
        self._volume_of = volume_of
        self._extract_limits = extract_limits or ExtractLimits()
        self._quotas: dict[str, DiskQuota] = {}
        self._pull_policy = pull_policy
        self._staging = data_dir / "pulls"  # the agent's own, outside every server's

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get(f"{ROUTE}/list", self.list_dir)
        app.router.add_get(f"{ROUTE}/stat", self.stat)
        app.router.add_get(f"{ROUTE}/download", self.download)
        app.router.add_put(f"{ROUTE}/upload", self.upload)
        app.router.add_patch(f"{ROUTE}/upload", self.upload)
        app.router.add_route("HEAD", f"{ROUTE}/upload", self.upload_offset)
        names = ("mkdir", "rename", "copy", "delete", "chmod", "compress", "decompress", "pull")
        for name in names:
            app.router.add_post(f"{ROUTE}/{name}", getattr(self, f"op_{name}"))

    # -- plumbing --------------------------------------------------------------------------

    @asynccontextmanager
    async def _files(
        self, request: web.Request, access: Access, path: str | None = None
    ) -> AsyncIterator[ServerFiles]:
        """The server's files, after the token is checked (for `access` to `path`, when
        the token is bound to one); OSErrors become API errors."""
        authorize(request, self._identity, self._started_at, access, path)
        server_id = request.match_info["server_id"]
        volume, owner = self._volume_of(server_id), self._owner_of(server_id)
        tree = await asyncio.to_thread(_open_tree, self._volumes, volume, owner)
        try:
            yield ServerFiles(tree)
        finally:
            tree.close()

    async def _quota(self, request: web.Request) -> DiskQuota:
        server_id = request.match_info["server_id"]
        quota = self._quotas.get(server_id)
        if quota is None:
            quota = DiskQuota(0, lambda: self._usage(server_id))
            self._quotas[server_id] = quota
        quota.limit_bytes = self._disk_limit_of(server_id)
        if quota.limit_bytes and quota.stale():
            await quota.refresh(asyncio.to_thread)
        return quota

    def _usage(self, server_id: str) -> int:
        tree = ConfinedTree.open(str(self._volumes), self._volume_of(server_id))
        try:
            return tree.disk_usage()
        finally:
            tree.close()

    async def _run(self, path: str, call: Callable[[], Any]) -> Any:
        try:
            return await asyncio.to_thread(call)
        except OSError as exc:
            raise os_error_answer(exc, path) from exc

    # -- reads -----------------------------------------------------------------------------

    async def list_dir(self, request: web.Request) -> web.Response:
        path = request.query.get("path", "/")
        async with self._files(request, "read") as files:
            entries = await self._run(path, lambda: files.list(path))
        return web.json_response({"path": path, "entries": [e.as_json() for e in entries]})

    async def stat(self, request: web.Request) -> web.Response:
        path = _required_query(request, "path")
        async with self._files(request, "read") as files:
            entry = await self._run(path, lambda: files.stat(path))
        return web.json_response(entry.as_json())

    async def download(self, request: web.Request) -> web.StreamResponse:
        path = _required_query(request, "path")
        async with self._files(request, "download", path) as files:
            fd, info = await self._run(path, lambda: files.open_read(path))
        # The tree is closed: the answer needs only the fd of the inode opened beneath.
        name = os.path.basename(path.rstrip("/")) or "file"
        quoted = name.replace("\\", "_").replace('"', "_")
        headers = {
            "Content-Type": "application/octet-stream",
            "Content-Disposition": f'attachment; filename="{quoted}"',
        }
        return await send_file(request, fd, info, headers)

    # -- uploads ---------------------------------------------------------------------------

    async def upload(self, request: web.Request) -> web.Response:
        """PUT: the file from byte 0. PATCH ?offset=N: append at N == the stored size."""
        path = _required_query(request, "path")
        resume = request.method == "PATCH"
        offset = _offset(request) if resume else 0
        async with self._files(request, "upload", path) as files:
            quota = await self._quota(request)
            opened = await self._run(
                path, lambda: files.open_write(path, truncate=not resume, create=not resume)
            )
            quota.release(opened.freed)
            try:
                if resume and offset != opened.size:
                    raise FileApiError(
                        409, "offset_mismatch", "offset is not the stored size",
                        {"path": path, "size": opened.size},
                    )  # fmt: skip
                known = [opened.size]

                def charge(start: int, length: int) -> None:
                    quota.charge(max(0, start + length - known[0]))
                    known[0] = max(known[0], start + length)

                try:
                    end = await receive_body(request, opened.fd, offset, charge)
                except OSError as exc:
                    raise os_error_answer(exc, path) from exc
            finally:
                await asyncio.to_thread(os.close, opened.fd)
        return web.json_response({"path": path, "size": end}, status=200 if resume else 201)

    async def upload_offset(self, request: web.Request) -> web.Response:
        """HEAD: the bytes already stored, as `Upload-Offset` (404 when none)."""
        path = _required_query(request, "path")
        async with self._files(request, "upload", path) as files:
            entry = await self._run(path, lambda: files.stat(path))
        return web.Response(headers={"Upload-Offset": str(entry.size), "Cache-Control": "no-store"})

    # -- small operations ------------------------------------------------------------------

    async def _op(
        self,
        request: web.Request,
        model: type[M],
        act: Callable[[ServerFiles, M, DiskQuota], Awaitable[dict[str, Any]]],
    ) -> web.Response:
        async with self._files(request, "write") as files:  # the token before the body
            body = await _body(request, model)
            quota = await self._quota(request)
            answer = await act(files, body, quota)
        return web.json_response(answer)

    async def op_mkdir(self, request: web.Request) -> web.Response:
        async def act(files: ServerFiles, body: MakeDirectory, _q: DiskQuota) -> dict[str, Any]:
            await self._run(body.path, lambda: files.mkdir(body.path, parents=body.parents))
            return {"path": body.path}

        return await self._op(request, MakeDirectory, act)

    async def op_rename(self, request: web.Request) -> web.Response:
        async def act(files: ServerFiles, body: MoveFiles, _q: DiskQuota) -> dict[str, Any]:
            await self._run(body.source, lambda: files.rename(body.source, body.target))
            return {"source": body.source, "target": body.target}

        return await self._op(request, MoveFiles, act)

    async def op_copy(self, request: web.Request) -> web.Response:
        async def act(files: ServerFiles, body: MoveFiles, quota: DiskQuota) -> dict[str, Any]:
            size = await self._run(body.source, lambda: files.size_of(body.source))
            _charge(quota, size, body.target)
            await self._run(body.source, lambda: files.copy(body.source, body.target))
            return {"source": body.source, "target": body.target, "bytes": size}

        return await self._op(request, MoveFiles, act)

    async def op_delete(self, request: web.Request) -> web.Response:
        async def act(files: ServerFiles, body: FilePath, quota: DiskQuota) -> dict[str, Any]:
            freed = await self._run(body.path, lambda: files.delete(body.path))
            quota.release(freed)
            return {"path": body.path, "freed_bytes": freed}

        return await self._op(request, FilePath, act)

    async def op_chmod(self, request: web.Request) -> web.Response:
        async def act(files: ServerFiles, body: ChangeMode, _q: DiskQuota) -> dict[str, Any]:
            await self._run(body.path, lambda: files.chmod(body.path, int(body.mode, 8)))
            return {"path": body.path, "mode": body.mode}

        return await self._op(request, ChangeMode, act)

    async def op_compress(self, request: web.Request) -> web.Response:
        async def act(files: ServerFiles, body: CompressFiles, quota: DiskQuota) -> dict[str, Any]:
            total = await self._run("/", lambda: sum(files.size_of(p) for p in body.paths))
            _charge(quota, total, body.target)
            try:
                size = await self._run(
                    body.target, lambda: compress(files, body.paths, body.target, body.format)
                )
            finally:
                quota.release(total)
            _charge(quota, size, body.target)
            return {"path": body.target, "size": size}

        return await self._op(request, CompressFiles, act)

    async def op_decompress(self, request: web.Request) -> web.Response:
        async def act(files: ServerFiles, body: DecompressFile, quota: DiskQuota) -> dict[str, Any]:
            room = max(0, quota.limit_bytes - (quota.used or 0)) if quota.limit_bytes else None
            limits = ExtractLimits(
                max_bytes=self._extract_limits.max_bytes,
                max_entries=self._extract_limits.max_entries,
                max_ratio=self._extract_limits.max_ratio,
                room=room,
            )
            try:
                report = await self._run(
                    body.path, lambda: extract(files, body.path, body.destination, limits)
                )
            except ArchiveRefused as exc:
                raise FileApiError(422, exc.code, str(exc), {"path": body.path}) from exc
            _charge(quota, report.bytes, body.destination, refuse=False)
            return {
                "path": body.path,
                "destination": body.destination,
                "files": report.files,
                "directories": report.directories,
                "bytes": report.bytes,
                "skipped": report.skipped,
            }

        return await self._op(request, DecompressFile, act)

    async def op_pull(self, request: web.Request) -> web.Response:
        async def act(files: ServerFiles, body: PullFile, quota: DiskQuota) -> dict[str, Any]:
            room = quota.limit_bytes - (quota.used or 0) if quota.limit_bytes else None
            max_bytes = self._pull_policy.max_bytes if room is None else max(0, room)
            try:
                fetched = await fetch_for_pull(
                    body.url, self._staging, self._pull_policy, max_bytes
                )
            except OutboundRefused as exc:
                raise FileApiError(422, "url_refused", str(exc), {"url": body.url}) from exc
            except OutboundTooLarge as exc:
                if room is not None and room < self._pull_policy.max_bytes:
                    raise FileApiError(507, "disk_limit_reached", str(exc)) from exc
                raise FileApiError(413, "too_large", str(exc), {"url": body.url}) from exc
            except OutboundError as exc:
                raise FileApiError(502, "fetch_failed", str(exc), {"url": body.url}) from exc
            try:
                _charge(quota, fetched.size, body.path)
                try:
                    size = await install_pulled(files, fetched, body.path)
                except OSError as exc:
                    quota.release(fetched.size)
                    raise os_error_answer(exc, body.path) from exc
            finally:
                await asyncio.to_thread(fetched.path.unlink, True)
            return {"path": body.path, "size": size, "url": fetched.url}

        return await self._op(request, PullFile, act)


def _open_tree(volumes: Path, volume: str, owner: tuple[int, int] | None) -> ConfinedTree:
    """The server directory `volume` as a tree (blocking: one worker-thread hop)."""
    # Opened only when the agent made it: never a directory for an unknown id.
    if os.path.isdir(volumes / volume):
        try:
            return ConfinedTree.open(str(volumes), volume, owner=owner)
        except OSError as exc:
            raise FileApiError(404, "server_not_found", "no such server on this node") from exc
    raise FileApiError(404, "server_not_found", "no such server on this node")


def _charge(quota: DiskQuota, size: int, path: str, *, refuse: bool = True) -> None:
    try:
        quota.charge(size)
    except OSError as exc:
        if refuse:
            raise os_error_answer(exc, path) from exc


def _required_query(request: web.Request, name: str) -> str:
    value = request.query.get(name, "")
    if not value or len(value) > 4096:
        raise FileApiError(400, "invalid_path", f"query parameter {name!r} is required")
    return value


def _offset(request: web.Request) -> int:
    raw = request.query.get("offset", "")
    if not raw.isdigit():
        raise FileApiError(400, "invalid_offset", "PATCH needs ?offset=<bytes already stored>")
    return int(raw)


async def _body(request: web.Request, model: type[M]) -> M:
    try:
        return model.model_validate(json.loads(await request.read() or b"null"))
    except json.JSONDecodeError as exc:
        raise FileApiError(400, "invalid_json", "the body is not JSON") from exc
    except ValidationError as exc:
        details = exc.errors(include_url=False, include_context=False, include_input=False)
        raise FileApiError(400, "validation_error", "invalid request body", details) from exc
