"""The one admission of the agent's server sockets (console and exec), per token scope.

A socket for a server opens only when its upgrade's Origin is allowed (403), the
server exists here (404) and the server's cap of authenticated sockets is not reached,
nor its client address's allowance of unauthenticated ones (429; see
:mod:`agent.ws.admission` for the counting). Its first valid token — of the gate's
scope, for this node, this server, issued since the agent started, with the gate's
permission if it names one — moves it onto the server's count.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from aiohttp import WSCloseCode, web

from agent.config import Console, NodeIdentity
from agent.fleet.supervisor import Supervisor
from agent.runtime import ContainerRuntimeError
from agent.ws.admission import SocketAdmission, origin_allowed
from common.tokens import Scope, ServerToken, TokenError, verify_server_token


class SocketGate:
    """Admits sockets of one `scope` (`console`, `exec`) for the servers of `supervisor`.

    `what` names the sockets in refusals ("console sockets"); `permission`, when given,
    must be in every token's permissions."""

    def __init__(
        self,
        scope: Scope,
        limits: Console,
        identity: NodeIdentity,
        supervisor: Supervisor,
        started_at: float,
        *,
        what: str,
        permission: str | None = None,
    ) -> None:
        self.scope, self.limits, self.identity = scope, limits, identity
        self.supervisor, self.started_at = supervisor, started_at
        self.what, self.permission = what, permission
        self.admission = SocketAdmission(
            limits.ws_max_unauthenticated_per_address, limits.ws_max_sockets_per_server
        )
        self._open: set[web.WebSocketResponse] = set()

    @contextlib.asynccontextmanager
    async def admitted(
        self, request: web.Request, *, max_message_bytes: int
    ) -> AsyncIterator[web.WebSocketResponse]:
        """The prepared socket of an admitted upgrade to `request`'s server (raises the
        HTTP refusal otherwise); counted as unauthenticated until :meth:`authenticate`,
        forgotten on exit."""
        server_id = request.match_info["server_id"]
        if not origin_allowed(request.headers.get("Origin"), self.limits.ws_allowed_origins):
            raise web.HTTPForbidden(text="origin not allowed")
        try:
            self.supervisor.get(server_id)
        except ContainerRuntimeError as exc:
            raise web.HTTPNotFound(text=str(exc)) from exc
        if self.admission.server_full(server_id):
            raise web.HTTPTooManyRequests(text=f"too many {self.what} for this server")
        address = request.remote or ""
        ws = web.WebSocketResponse(max_msg_size=max_message_bytes, heartbeat=30)
        # Counted before the handshake awaits, so simultaneous connects cannot all pass.
        if not self.admission.open(ws, address):
            raise web.HTTPTooManyRequests(
                text=f"too many unauthenticated {self.what} from this address"
            )
        self._open.add(ws)
        try:
            await ws.prepare(request)
            yield ws
        finally:
            self._open.discard(ws)
            self.admission.close(ws, address, server_id)

    def verify(self, token: str, server_id: str) -> ServerToken:
        """The token's claims; TokenError (TokenExpiredError once expired) unless it is
        of this gate's scope, for this node and `server_id`, issued since the agent
        started, and grants the gate's permission."""
        claims = verify_server_token(
            self.identity.node_secret,
            token,
            node_id=self.identity.node_id,
            scope=self.scope,
            not_before=self.started_at,
        )
        if claims.server_id != server_id:
            raise TokenError("token is for another server")
        if self.permission is not None and not claims.allows(self.permission):
            raise TokenError(f"token lacks permission {self.permission!r}")
        return claims

    def authenticate(self, ws: web.WebSocketResponse, address: str, server_id: str) -> bool:
        """Count `ws` (from `address`, its token verified) against `server_id`; False
        when the server is full. Idempotent."""
        return self.admission.authenticate(ws, address, server_id)

    async def close(
        self, ws: web.WebSocketResponse, address: str, server_id: str, code: int, why: str
    ) -> None:
        """Close `ws` on the agent's initiative, its slot freed first: a client that
        reconnects as soon as it reads the close frame finds the slot free (the close
        handshake, and the handler's exit after it, come later)."""
        self.admission.close(ws, address, server_id)
        await ws.close(code=code, message=why.encode())

    async def close_all(self) -> None:
        """Close every open socket (the agent is stopping)."""
        for ws in list(self._open):
            await ws.close(code=WSCloseCode.GOING_AWAY, message=b"agent shutting down")
