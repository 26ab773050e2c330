"""Every page of the web UI, walked in a real browser: the page table
(ui/src/routes.ts) is read, so a page added there is walked too. Each page is
screenshotted light, dark and 375 px wide into an artifacts folder (its path is
printed), must not scroll sideways at 375 px, and gets an axe-core scan in light and
dark: no serious or critical violations.

The server page's light screenshot, shrunk to a palette PNG, is the README's picture:
`make screenshot` runs this test with ENCEDEUS_README_SCREENSHOT=docs/img/server.png.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from axe_playwright_python.sync_playwright import Axe
from PIL import Image
from playwright.sync_api import Page, ViewportSize, expect

from tests.conftest import TEST_IMAGE
from tests.e2e.single_host_support import SingleHost
from tests.e2e.web_ui_support import (
    backup_of,
    create_game_server,
    server_tabs,
    sign_in,
    sign_in_by_api,
    ui_routes,
)

pytestmark = [pytest.mark.e2e, pytest.mark.docker]
BLOCKING_IMPACTS = ("serious", "critical")
README_SHOT_LIMIT = 150 * 1024
DESKTOP = ViewportSize(width=1280, height=900)
NARROW = ViewportSize(width=375, height=800)
README_VIEW = ViewportSize(width=1040, height=880)


@pytest.fixture(scope="module")
def walk_server(ui_stack: SingleHost) -> Iterator[str]:
    """A running game server of the admin's, for the pages that show one."""
    admin = sign_in_by_api(ui_stack, ui_stack.admin_username, ui_stack.admin_password)
    server_id = create_game_server(admin, "minecraft-lobby")
    backup_of(admin, server_id, "before-update", locked=True)
    yield server_id
    admin.call("DELETE", f"/v1/deployments/{server_id}")


@pytest.fixture(scope="module")
def walk_task(ui_stack: SingleHost) -> Iterator[str]:
    """A task of the admin's that ran, for the task page."""
    admin = sign_in_by_api(ui_stack, ui_stack.admin_username, ui_stack.admin_password)
    body = {"name": "nightly-report", "image": TEST_IMAGE, "command": "echo report done"}
    task_id = str(admin.call("POST", "/v1/tasks", body)["id"])
    admin.call("POST", f"/v1/tasks/{task_id}")
    yield task_id
    admin.call("DELETE", f"/v1/tasks/{task_id}")


def sample_urls(walk_server: str, walk_task: str) -> dict[str, dict[str, str]]:
    """Real addresses, by screenshot name, for every parameterised page: every tab of
    the server page. A new page with a parameter fails the walk until it gets some."""
    server = f"/servers/{walk_server}"
    return {
        "/servers/:id/:tab?": {
            f"server-{tab or 'console'}": f"{server}/{tab}" if tab else server
            for tab in server_tabs()
        },
        "/tasks/:id": {"task": f"/tasks/{walk_task}"},
    }


def settle_console(page: Page) -> None:
    expect(page.get_by_test_id("terminal")).to_contain_text("is ready for players")
    expect(page.get_by_test_id("graph-CPU-points")).not_to_have_text(re.compile(r"^[01]$"))


def open_node_details(page: Page) -> None:
    """The running node's fingerprint and host graphs open, so they are scanned too."""
    node = page.get_by_role("list", name="Nodes").get_by_role("listitem").first
    node.locator("summary").click()
    expect(node.get_by_text("Docker", exact=True)).to_be_visible()
    expect(node.get_by_test_id("graph-CPU-points")).not_to_have_text("0")


#: What "this page has finished loading" means beyond the generic checks, by the
#: page's name (its pattern, and a server tab's name after it).
SETTLED: dict[str, Callable[[Page], None]] = {
    "server-console": settle_console,
    "admin-nodes": open_node_details,
    "server-backups": lambda page: expect(
        page.get_by_role("list", name="Backups").locator('[data-backup-state="completed"]')
    ).to_have_count(1),
    "server-files": lambda page: expect(
        page.get_by_role("list", name="Files in this folder")
    ).to_be_visible(),
}


def serious_violations(page: Page, where: str) -> list[str]:
    """axe-core's serious and critical findings on the page as it is now."""
    results = Axe().run(page)
    found: list[dict[str, Any]] = results.response["violations"]
    return [
        f"{where}: {v['id']} ({v['impact']}) {v['help']}: "
        + "; ".join(str(node["target"]) for node in v["nodes"][:5])
        for v in found
        if v.get("impact") in BLOCKING_IMPACTS
    ]


def slug(path: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", path.lower()).strip("-") or "root"


def visit(page: Page, name: str, url: str, artifacts: Path) -> list[str]:
    """Open the page, screenshot it three ways, scan it twice; the problems found."""
    page.set_viewport_size(DESKTOP)
    page.emulate_media(color_scheme="light")
    page.goto(url)
    expect(page.locator("main h1").first).to_be_visible()
    expect(page.get_by_text("Loading…", exact=True)).to_have_count(0)
    if settle := SETTLED.get(name):
        settle(page)
    problems: list[str] = []
    page.screenshot(path=artifacts / f"{name}-light.png", full_page=True)
    problems += serious_violations(page, f"{url} (light)")
    page.emulate_media(color_scheme="dark")
    page.screenshot(path=artifacts / f"{name}-dark.png", full_page=True)
    problems += serious_violations(page, f"{url} (dark)")
    page.emulate_media(color_scheme="light")
    page.set_viewport_size(NARROW)
    page.screenshot(path=artifacts / f"{name}-375.png", full_page=True)
    width = page.evaluate("() => document.documentElement.scrollWidth")
    if width > NARROW["width"]:
        problems.append(f"{url}: scrolls sideways at 375 px ({width} px wide)")
    page.set_viewport_size(DESKTOP)
    return problems


def readme_screenshot(page: Page, artifacts: Path) -> Path:
    """The top of the server page, as a small palette PNG."""
    page.set_viewport_size(README_VIEW)
    page.evaluate("() => window.scrollTo(0, 0)")
    raw = page.screenshot()
    page.set_viewport_size(DESKTOP)
    image = Image.open(io.BytesIO(raw)).convert("RGB").quantize(colors=64)
    path = artifacts / "server-readme.png"
    image.save(path, optimize=True)
    assert path.stat().st_size < README_SHOT_LIMIT, f"{path} is {path.stat().st_size} bytes"
    if target := os.environ.get("ENCEDEUS_README_SCREENSHOT"):
        Path(target).write_bytes(path.read_bytes())
    return path


def test_every_page_light_dark_narrow_and_accessible(
    page: Page,
    ui_stack: SingleHost,
    walk_server: str,
    walk_task: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    # ENCEDEUS_UI_ARTIFACTS keeps them somewhere that outlives pytest's rotation of
    # its temporary folders (it keeps the last three runs').
    chosen = os.environ.get("ENCEDEUS_UI_ARTIFACTS")
    artifacts = Path(chosen) if chosen else tmp_path_factory.mktemp("ui-pages")
    artifacts.mkdir(parents=True, exist_ok=True)
    print(f"\nUI screenshots: {artifacts}")
    routes = ui_routes()
    samples = sample_urls(walk_server, walk_task)
    missing = [r.path for r in routes if r.parameters and r.path not in samples]
    assert not missing, f"give the walk sample addresses for {missing} (sample_urls)"
    problems: list[str] = []
    for route in (r for r in routes if r.access == "public"):
        problems += visit(page, slug(route.path), route.path, artifacts)
    sign_in(page, ui_stack.admin_username, ui_stack.admin_password)
    expect(page.get_by_role("heading", name="Servers")).to_be_visible()
    for route in (r for r in routes if r.access != "public"):
        for name, url in samples.get(route.path, {slug(route.path): route.path}).items():
            problems += visit(page, name, url, artifacts)
            if name == "server-console":
                readme_screenshot(page, artifacts)
    assert not problems, "\n".join(problems)
