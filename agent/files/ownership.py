"""Who owns a server's new files and how much its directory may hold: one answer for
SFTP and the HTTP file API."""

from __future__ import annotations

from agent.fleet.spec import volume_name
from agent.fleet.supervisor import Supervisor


def file_owner(supervisor: Supervisor, server_id: str) -> tuple[int, int]:
    """Who owns the files SFTP or the file API creates for a server: its container's
    user on the host."""
    server = supervisor.servers.get(server_id)
    return supervisor.volumes.owner_of(server.spec if server is not None else None)


def disk_limit(supervisor: Supervisor, server_id: str) -> int:
    """The data directory limit this node was given for a server (0: none known)."""
    server = supervisor.servers.get(server_id)
    return int(server.spec.resources.disk_bytes) if server is not None else 0


def known_volume(supervisor: Supervisor, server_id: str) -> str | None:
    """The volume (data directory name) of a server this node knows, created or still
    pulling; None for one it does not know."""
    server = supervisor.servers.get(server_id)
    if server is not None:
        return volume_name(server.spec)
    pending = supervisor.pulls.pending.get(server_id)
    return volume_name(pending.spec) if pending is not None else None


def volume_of(supervisor: Supervisor, server_id: str) -> str:
    """The volume of a server for the file API: the one this node knows, else the
    server id (its directory's name before volume ids; the API opens only directories
    that exist)."""
    return known_volume(supervisor, server_id) or server_id
