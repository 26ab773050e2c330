"""Who may hold console sockets: a pure count of open sockets, no I/O.

A socket is first *unauthenticated*, counted against its client address (at most
`max_unauthenticated_per_address` at once), then, after its first valid `auth`,
*authenticated*, counted against its server (at most `max_authenticated_per_server`).
Sockets that never authenticate therefore cannot fill a server's cap and lock its
owner out: they only use up their own address's allowance, and only for the auth
window (`ws_auth_timeout_seconds`) before the session closes them.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field


@dataclass(slots=True)
class SocketAdmission:
    """Open console sockets by address (unauthenticated) and by server (authenticated)."""

    max_unauthenticated_per_address: int
    max_authenticated_per_server: int
    _unauthenticated: dict[str, set[Hashable]] = field(default_factory=dict)
    _authenticated: dict[str, set[Hashable]] = field(default_factory=dict)

    def server_full(self, server_id: str) -> bool:
        """Would one more authenticated socket exceed the server's cap?"""
        return len(self._authenticated.get(server_id, ())) >= self.max_authenticated_per_server

    def open(self, socket: Hashable, address: str) -> bool:
        """Count a new unauthenticated socket from `address`; False (nothing counted)
        when that address already holds its allowance."""
        pending = self._unauthenticated.setdefault(address, set())
        if len(pending) >= self.max_unauthenticated_per_address:
            return False
        pending.add(socket)
        return True

    def authenticate(self, socket: Hashable, address: str, server_id: str) -> bool:
        """Move `socket` from its address's count to its server's; False (the socket
        stays unauthenticated) when the server is full. Idempotent once admitted."""
        if socket in self._authenticated.get(server_id, ()):
            return True
        if self.server_full(server_id):
            return False
        self._discard(self._unauthenticated, address, socket)
        self._authenticated.setdefault(server_id, set()).add(socket)
        return True

    def close(self, socket: Hashable, address: str, server_id: str) -> None:
        """Forget `socket`, wherever it was counted."""
        self._discard(self._unauthenticated, address, socket)
        self._discard(self._authenticated, server_id, socket)

    @staticmethod
    def _discard(counts: dict[str, set[Hashable]], key: str, socket: Hashable) -> None:
        sockets = counts.get(key)
        if sockets is not None:
            sockets.discard(socket)
            if not sockets:
                del counts[key]


def origin_allowed(origin: str | None, allowed: list[str]) -> bool:
    """May a socket whose upgrade carried `origin` open, given the configured list?

    An empty list allows everything. Otherwise a browser's page must come from a listed
    origin (every browser sends `Origin` on a WebSocket upgrade); a request without one
    is not a browser's (the `encedeus` client, scripts) and is let through: the Origin
    check guards against other sites' pages, the token guards everything else.
    """
    return not allowed or not origin or origin in allowed
