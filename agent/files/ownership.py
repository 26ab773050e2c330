"""Who owns a server's new files and how much its directory may hold: one answer for
SFTP and the HTTP file API."""

from __future__ import annotations

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
