"""CORS for the file API, so the web UI (served by the control plane, another origin)
can upload and download with signed URLs (docs/protocols/files.md "Browsers").

Only origins in `agent.console.ws_allowed_origins` (the same list that admits console
sockets; `encedeus up` puts its own UI there) get CORS headers; with an empty list no
page of another origin may read the API's answers. The signed URL's token still
decides every request: CORS only lets an allowed page see the answer.
"""

from __future__ import annotations

from aiohttp import web

FILES_PATH = "/api/servers/{server_id}/files/{operation}"
METHODS = "GET, HEAD, PUT, PATCH, POST"
# Upload-Offset: the resume point HEAD answers (docs/protocols/files.md).
EXPOSED = "Upload-Offset, Content-Length, Content-Disposition"
FILES_PREFIX = "/api/servers/"


class FileCors:
    """Preflight answers and CORS headers for the listed origins."""

    def __init__(self, allowed_origins: list[str]) -> None:
        self.allowed = frozenset(allowed_origins)

    def _allowed_origin(self, request: web.Request) -> str | None:
        origin = request.headers.get("Origin")
        return origin if origin and origin in self.allowed else None

    async def preflight(self, request: web.Request) -> web.Response:
        """`OPTIONS`: 204 with the allowed methods for a listed origin, else 403."""
        origin = self._allowed_origin(request)
        if origin is None:
            raise web.HTTPForbidden(text="origin not allowed")
        return web.Response(
            status=204,
            headers={
                "Access-Control-Allow-Origin": origin,
                "Access-Control-Allow-Methods": METHODS,
                "Access-Control-Allow-Headers": "Content-Type",
                "Access-Control-Max-Age": "600",
                "Vary": "Origin",
            },
        )

    async def add_headers(self, request: web.Request, response: web.StreamResponse) -> None:
        """`on_response_prepare`: let a listed origin read a file API answer."""
        if "/files/" not in request.path or not request.path.startswith(FILES_PREFIX):
            return
        origin = self._allowed_origin(request)
        if origin is not None:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Access-Control-Expose-Headers"] = EXPOSED
            response.headers.add("Vary", "Origin")

    def install(self, app: web.Application) -> None:
        app.router.add_route("OPTIONS", FILES_PATH, self.preflight)
        app.on_response_prepare.append(self.add_headers)
