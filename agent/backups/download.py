"""`GET /api/servers/{server_id}/backups/{snapshot_id}/download` on the agent's HTTP
port: one backup as a `.tar.gz`, streamed as restic reads it (docs/stateful.md).

The URL is one the control plane signed: a token of scope `backup-download` for that
server whose `details.snapshot` is this snapshot (`details.filename` names the
download). Compression runs in worker threads, never on the event loop; an error
restic reports before the first byte is answered in the error envelope, one after it
cuts the stream short (the gzip trailer is then missing, so no client takes it for
whole), as does a client that accepts nothing for :data:`STALL_SECONDS`.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import zlib

from aiohttp import web

from agent.backups.restic import ResticError
from agent.backups.volume_backups import BackupUnreachable, VolumeBackups
from agent.config import NodeIdentity
from agent.files.access import FileApiError, presented_token
from common.logging import get_logger
from common.tokens import ServerToken, TokenError, TokenExpiredError, verify_server_token

log = get_logger(__name__)
ROUTE = "/api/servers/{server_id}/backups/{snapshot_id}/download"
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")
#: A download whose client accepts no byte for this long is cut off.
STALL_SECONDS = 60.0


class BackupDownloads:
    """Serves backups of `backups` to holders of a signed download URL."""

    def __init__(self, identity: NodeIdentity, started_at: float, backups: VolumeBackups) -> None:
        self._identity, self._started_at, self._backups = identity, started_at, backups

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get(ROUTE, self.download)

    def _authorize(self, request: web.Request) -> ServerToken:
        token = presented_token(request)
        if not token:
            raise FileApiError(401, "token_required", "a signed download token is required")
        try:
            claims = verify_server_token(
                self._identity.node_secret,
                token,
                node_id=self._identity.node_id,
                scope="backup-download",
                not_before=self._started_at,
            )
        except TokenExpiredError as exc:
            raise FileApiError(401, "token_expired", str(exc)) from exc
        except TokenError as exc:
            raise FileApiError(401, "invalid_token", str(exc)) from exc
        if claims.server_id != request.match_info["server_id"]:
            raise FileApiError(403, "wrong_server", "the token is for another server")
        if claims.details.get("snapshot") != request.match_info["snapshot_id"]:
            raise FileApiError(403, "wrong_backup", "the token is for another backup")
        return claims

    async def download(self, request: web.Request) -> web.StreamResponse:
        """The snapshot as a gzip-compressed tar."""
        claims = self._authorize(request)
        try:
            self._backups.check_repository(str(claims.details.get("repository", "")))
        except BackupUnreachable as exc:
            raise FileApiError(409, "backup_unreachable", str(exc)) from exc
        dump = self._backups.repository.dump(request.match_info["snapshot_id"])
        async with contextlib.aclosing(dump) as chunks:
            try:
                first = await anext(chunks, b"")
            except ResticError as exc:
                raise FileApiError(404, "backup_not_found", str(exc)) from exc
            response = web.StreamResponse(headers=_headers(claims))
            await response.prepare(request)
            compressor = zlib.compressobj(6, zlib.DEFLATED, 31)  # 31: the gzip format
            try:
                await _write(response, await asyncio.to_thread(compressor.compress, first))
                async for chunk in chunks:
                    await _write(response, await asyncio.to_thread(compressor.compress, chunk))
            except ResticError as exc:
                log.warning("backup_download_failed", error=str(exc))
                return response  # without the gzip trailer: the client sees it cut short
            except TimeoutError:
                log.warning("backup_download_stalled", seconds=STALL_SECONDS)
                if request.transport is not None:
                    request.transport.abort()
                return response
        await response.write(await asyncio.to_thread(compressor.flush))
        await response.write_eof()
        return response


async def _write(response: web.StreamResponse, data: bytes) -> None:
    """Send `data`; TimeoutError when the client takes none of it for STALL_SECONDS
    (restic's dump, and its lock on the repository, end with the download)."""
    async with asyncio.timeout(STALL_SECONDS):
        await response.write(data)


def _headers(claims: ServerToken) -> dict[str, str]:
    name = _SAFE_NAME.sub("_", str(claims.details.get("filename") or "backup")) + ".tar.gz"
    return {
        "Content-Type": "application/gzip",
        "Content-Disposition": f'attachment; filename="{name}"',
    }
