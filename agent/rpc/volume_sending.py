"""The `SendVolume` rpc: a volume streamed to another agent, with progress.

The blocking sender (agent/fleet/volume_transfer.py) runs in a worker thread; its
progress reaches the call through a queue, at most every PROGRESS_INTERVAL seconds,
and the last message says done with the digest the target confirmed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

from agent.fleet.spec import SERVER_ID
from agent.fleet.supervisor import Supervisor
from agent.fleet.volume_transfer import TransferFailed, VolumeSender, volume_bytes
from agent.runtime import InvalidSpec, NotFound
from protos import agent_pb2 as pb

PROGRESS_INTERVAL = 0.5


class VolumeBusy(Exception):
    """A running server uses the volume (FAILED_PRECONDITION)."""


async def send_volume(
    supervisor: Supervisor, request: pb.SendVolumeRequest
) -> AsyncIterator[pb.TransferProgress]:
    """Progress of streaming `request.volume_id` to the target; TransferFailed when it
    did not arrive whole."""
    volume = request.volume_id
    if not SERVER_ID.match(volume):
        raise InvalidSpec("volume_id must be 1-63 characters of letters, digits, '_', '.', '-'")
    if volume in supervisor.running_volumes():
        raise VolumeBusy(f"volume {volume} is used by a running server: stop it first")
    volumes = supervisor.volumes
    if not await asyncio.to_thread(volumes.holds, volume):
        raise NotFound(f"no volume {volume!r} on this node")
    data_dir = volumes.path(volume)
    total = await asyncio.to_thread(volume_bytes, data_dir)
    loop = asyncio.get_running_loop()
    sent = asyncio.Queue[int]()

    def progress(bytes_sent: int) -> None:  # in the sender's thread
        loop.call_soon_threadsafe(sent.put_nowait, bytes_sent)

    sender = VolumeSender(data_dir, volume, request.target_address, request.token, progress)
    running = asyncio.ensure_future(asyncio.to_thread(sender.run))
    last = 0.0
    try:
        while not running.done():
            getter = asyncio.ensure_future(sent.get())
            await asyncio.wait({getter, running}, return_when=asyncio.FIRST_COMPLETED)
            if not getter.done():
                getter.cancel()
                continue
            if time.monotonic() - last >= PROGRESS_INTERVAL:
                last = time.monotonic()
                yield pb.TransferProgress(bytes_sent=getter.result(), volume_bytes=total)
        done, sha256 = await running
    finally:
        running.cancel()
    yield pb.TransferProgress(bytes_sent=done, volume_bytes=total, done=True, sha256=sha256)


__all__ = ["TransferFailed", "VolumeBusy", "send_volume"]
