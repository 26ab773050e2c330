"""`PUT /api/volumes/{volume_id}/transfer`: a volume streamed here by another agent.

The wire is in agent/fleet/volume_transfer.py. The request carries a `transfer` token
the control plane signed for this node and this volume (`server` = the volume id), used
once. The stream is unpacked by `zstd -d | tar -x` into `<data_dir>/transfers/<jti>`
while its SHA-256 is computed; only a complete stream whose digest matches, unpacked
cleanly, replaces the volume here (an older copy of it, left by an earlier run of the
slot, is deleted first). A volume that a server on this node uses is refused (409),
before anything is read. Errors answer in the documented envelope.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from aiohttp import web

from agent.config import NodeIdentity
from agent.files.access import FileApiError, presented_token
from agent.fleet.data_dir import ServerVolumes
from agent.fleet.spec import SERVER_ID
from agent.fleet.volume_transfer import (
    FRAME_DATA,
    FRAME_END,
    FRAME_HEADER,
    MAX_FRAME,
    TRANSFER_ROUTE,
)
from common.logging import get_logger
from common.subprocesses import PIPE, spawn
from common.tokens import TokenError, verify_server_token

log = get_logger(__name__)


class StreamBroken(Exception):
    """The stream ended early, or is not made of frames."""


class VolumeReceiver:
    """Receives transfers into `volumes` (see the module docstring)."""

    def __init__(
        self,
        identity: NodeIdentity,
        volumes: ServerVolumes,
        started_at: float,
        in_use: Callable[[], set[str]],
    ) -> None:
        self.identity, self.volumes, self.started_at = identity, volumes, started_at
        self.in_use = in_use
        self.staging = volumes.agent_dir / "transfers"
        self._used_tokens: set[str] = set()
        self._receiving: set[str] = set()

    def discard_leftovers(self) -> None:
        """At start: what transfers cut off by the agent's end left (blocking)."""
        if self.staging.is_dir():
            for leftover in self.staging.iterdir():
                shutil.rmtree(leftover, ignore_errors=True)

    def add_routes(self, app: web.Application) -> None:
        app.router.add_put(TRANSFER_ROUTE, self.receive)

    def _authorized(self, request: web.Request, volume_id: str) -> str:
        """The token's id (its one use), or a FileApiError."""
        try:
            claims = verify_server_token(
                self.identity.node_secret,
                presented_token(request),
                node_id=self.identity.node_id,
                scope="transfer",
                not_before=self.started_at,
            )
        except TokenError as exc:
            raise FileApiError(401, "invalid_token", str(exc)) from exc
        if claims.server_id != volume_id:
            raise FileApiError(403, "wrong_volume", "the token is for another volume")
        if claims.token_id in self._used_tokens:
            raise FileApiError(403, "token_used", "this transfer token was used already")
        self._used_tokens.add(claims.token_id)
        return claims.token_id

    async def receive(self, request: web.Request) -> web.Response:
        volume_id = request.match_info["volume_id"]
        if not SERVER_ID.match(volume_id):
            raise FileApiError(400, "invalid_volume", "not a volume id")
        transfer_id = self._authorized(request, volume_id)
        if volume_id in self.in_use() or volume_id in self._receiving:
            raise FileApiError(409, "volume_in_use", f"volume {volume_id} is in use on this node")
        self._receiving.add(volume_id)
        staging = self.staging / transfer_id
        try:
            received, sha256 = await self._unpack(request, staging)
            await asyncio.to_thread(self._install, volume_id, staging)
        except StreamBroken as exc:
            raise FileApiError(400, "transfer_broken", str(exc)) from exc
        finally:
            self._receiving.discard(volume_id)
            await asyncio.to_thread(shutil.rmtree, staging, True)
        log.info("volume_received", volume=volume_id, bytes=received)
        return web.json_response({"sha256": sha256, "bytes": received})

    async def _unpack(self, request: web.Request, staging: Path) -> tuple[int, str]:
        await asyncio.to_thread(staging.mkdir, 0o700, True, True)
        read_end, write_end = os.pipe()
        try:
            zstd = await spawn("zstd", "-d", "-q", "-c", stdin=PIPE, stdout=write_end)
            tar = await spawn(
                "tar", "-C", str(staging), "--numeric-owner", "-xf", "-",
                stdin=read_end, stderr=PIPE,
            )  # fmt: skip
        finally:
            os.close(read_end)
            os.close(write_end)
        try:
            received, sha256 = await self._frames(request, zstd)
            if await zstd.wait() != 0:
                raise StreamBroken("the stream is not valid zstd")
            _, error = await tar.communicate()
            if tar.returncode != 0:
                raise StreamBroken(f"unpacking failed: {error.decode(errors='replace')[:300]}")
        finally:
            for process in (zstd, tar):
                if process.returncode is None:
                    with contextlib.suppress(ProcessLookupError):
                        process.kill()
                    await process.wait()
        return received, sha256

    async def _frames(
        self, request: web.Request, zstd: asyncio.subprocess.Process
    ) -> tuple[int, str]:
        assert zstd.stdin is not None
        digest, received = hashlib.sha256(), 0
        try:
            while True:
                kind, length = FRAME_HEADER.unpack(await request.content.readexactly(5))
                if length > MAX_FRAME:
                    raise StreamBroken("a frame is too large")
                payload = await request.content.readexactly(length)
                if kind == FRAME_END:
                    if payload != digest.digest():
                        raise StreamBroken("the SHA-256 of what arrived does not match")
                    zstd.stdin.close()
                    return received, digest.hexdigest()
                if kind != FRAME_DATA:
                    raise StreamBroken("an unknown frame")
                await asyncio.to_thread(digest.update, payload)
                zstd.stdin.write(payload)
                await zstd.stdin.drain()
                received += length
        except asyncio.IncompleteReadError as exc:
            raise StreamBroken("the stream ended before it was complete") from exc
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise StreamBroken("the stream could not be unpacked") from exc

    def _install(self, volume_id: str, staging: Path) -> None:
        """Replace the volume here with the unpacked data (blocking)."""
        if self.volumes.holds(volume_id):
            self.volumes.delete(volume_id)  # an older copy of the slot
        target = self.volumes.path(volume_id)
        target.parent.mkdir(parents=True, exist_ok=True)
        staging.rename(target)
