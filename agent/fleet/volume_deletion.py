"""Deleting a volume no server here uses: the sweep of released and stale copies.

The control plane deletes the data of a removed slot (after its grace period) and the
copies a moved slot left behind on other nodes (docs/stateful.md) with the
`DeleteVolume` rpc. A volume that any server on this node still uses — a container,
a pull waiting to create one, a create under way — is refused, so a slot placed back
here meanwhile never loses its data. Deleting a volume that is not here is a no-op
(the sweep retries after a lost answer).
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection

from agent.fleet.data_dir import ServerVolumes
from agent.fleet.spec import SERVER_ID
from agent.runtime import InvalidSpec


class VolumeInUse(Exception):
    """The volume is used by a server on this node (FAILED_PRECONDITION)."""


async def delete_volume(volumes: ServerVolumes, volume_id: str, in_use: Collection[str]) -> bool:
    """Unmount and delete `volume_id`'s data here; True when there was any.

    InvalidSpec for an id that is no volume name (so never `..` nor a path: it is joined
    beneath the volumes directory); VolumeInUse when it is in `in_use`."""
    if not SERVER_ID.match(volume_id):
        raise InvalidSpec("volume_id must be 1-63 characters of letters, digits, '_', '.', '-'")
    if volume_id in in_use:
        raise VolumeInUse(f"volume {volume_id} is used by a server on this node")
    if not await asyncio.to_thread(volumes.holds, volume_id):
        return False
    await asyncio.to_thread(volumes.delete, volume_id)
    return True
