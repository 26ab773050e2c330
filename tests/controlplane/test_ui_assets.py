"""The web UI's static files at `/`: caching headers and the SPA fallback, which never
shadows the API (controlplane/api/ui_assets.py, docs/ui.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from controlplane.api import ui_assets
from tests.controlplane.accounts_support import error_code
from tests.controlplane.conftest import SQLITE_ONLY, ConfigFactory, start_client

Client = TestClient[Any, Any]
pytestmark = [pytest.mark.usefixtures("blocking_guard"), SQLITE_ONLY]
INDEX = "<!doctype html><title>Encedeus</title><div id=app></div>"


@pytest.fixture
def built_ui(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A build folder shaped like `make ui`'s, installed as the served one."""
    dist = tmp_path / "ui_dist"
    (dist / "assets").mkdir(parents=True)
    (dist / "index.html").write_text(INDEX)
    (dist / "assets" / "index-Ab12.js").write_text("console.log(1)")
    (dist / "secret.txt").write_text("not an asset")
    monkeypatch.setattr(ui_assets, "DEFAULT_DIST", dist)
    return dist


async def test_index_is_revalidated_and_hashed_assets_are_immutable(
    built_ui: Path, make_config: ConfigFactory
) -> None:
    client = await start_client(make_config())
    try:
        for path in ("/", "/servers", "/servers/3c5e/console", "/login?next=%2F"):
            page = await client.get(path)
            assert page.status == 200, path
            assert page.headers["Cache-Control"] == "no-cache"
            assert page.content_type == "text/html"
            assert await page.text() == INDEX
        asset = await client.get("/assets/index-Ab12.js")
        assert asset.status == 200
        assert asset.headers["Cache-Control"] == "public, max-age=31536000, immutable"
        assert "javascript" in asset.content_type
    finally:
        await client.close()


async def test_the_fallback_never_shadows_the_api(
    built_ui: Path, make_config: ConfigFactory
) -> None:
    client = await start_client(make_config())
    try:
        for path in ("/v1/nope", "/v1", "/v1/", "/health/x", "/metrics/x"):
            missing = await client.get(path)
            assert missing.status == 404, path
            assert await error_code(missing) == "not_found"
        assert (await client.get("/health")).content_type == "application/json"
        assert (await client.get("/metrics")).content_type == "text/plain"
        # Not a UI path either: other methods and files outside assets/ are not served.
        assert (await client.post("/servers")).status == 405
        for path in ("/assets/nope.js", "/assets/.hidden"):
            response = await client.get(path)
            assert response.status == 404, path
            assert await error_code(response) == "not_found"
        for path in ("/assets/%2e%2e%2fsecret.txt", "/secret.txt"):
            assert "not an asset" not in await (await client.get(path)).text(), path
    finally:
        await client.close()


async def test_without_a_build_the_root_says_the_ui_was_not_built(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make_config: ConfigFactory
) -> None:
    monkeypatch.setattr(ui_assets, "DEFAULT_DIST", tmp_path / "missing")
    client = await start_client(make_config())
    try:
        page = await client.get("/")
        assert page.status == 200
        assert "web UI was not built" in await page.text()
        assert (await client.get("/health")).status == 200
    finally:
        await client.close()
