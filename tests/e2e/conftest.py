"""Session-wide systems the end-to-end tests share, each made once per session:

- the one running system and the one browser of every web UI test (`encedeus up` and
  chromium). The stack runs with `--advertise-host localhost`: the UI is used at the
  URL it prints for browsers (http://localhost:PORT), and the console and file URLs
  the control plane hands out name that host too, proving the advertised address end
  to end on loopback;
- the one two-agent cluster every two-agent test shares (a control plane and agents
  `node-a` and `node-b` as processes on loopback, the real dockerd), with the short
  liveness timings of tests/e2e/cluster_support.py and one fleet backup repository
  (a restic repository in a directory both agents read): a test that kills, freezes
  or drains a node brings it back before it ends.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from controlplane.api.ui_assets import DEFAULT_DIST
from tests.e2e.cluster_support import (
    Cluster,
    add_agent,
    remove_session_containers,
    sign_in_admin,
    start_controlplane,
    wait_healthy,
)
from tests.e2e.single_host_support import SingleHost, running_stack
from tests.e2e.web_ui_support import CHROMIUM, CHROMIUM_ARGS, WAIT_MS

expect.set_options(timeout=WAIT_MS)


@pytest.fixture(scope="session")
def ui_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SingleHost]:
    assert (DEFAULT_DIST / "index.html").is_file(), "the web UI is not built: run `make ui`"
    base = tmp_path_factory.mktemp("web-ui-e2e")
    # Every browser test signs in from 127.0.0.1: the per-address limit on sign-ins
    # (10 a minute by default) would refuse a growing suite.
    config = base / "config.hcl"
    config.write_text("controlplane {\n  auth_rate_limit = 1000\n}\n", encoding="utf-8")
    data_dir = base / "encedeus"
    extra = ("--advertise-host", "localhost", "--config", str(config))
    yield from running_stack(data_dir, *extra, port_range="31740-31749")


@pytest.fixture(scope="session")
def ui_browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(ui_browser: Browser, ui_stack: SingleHost) -> Iterator[Page]:
    """A fresh browser context (no cookies) on the UI's printed URL."""
    context = ui_browser.new_context(
        base_url=ui_stack.ui_url, viewport={"width": 1280, "height": 900}
    )
    context.set_default_timeout(WAIT_MS)
    page = context.new_page()
    try:
        yield page
    finally:
        context.close()


@pytest.fixture(scope="session")
def two_agent_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    root: Path = tmp_path_factory.mktemp("cluster")
    running = start_controlplane(root)

    async def assemble() -> None:
        await wait_healthy(running)
        await sign_in_admin(running)
        # One fleet repository both agents read (a move after node loss restores
        # from it): a local directory, as shared storage would be.
        fleet: dict[str, object] = {
            "backups": {"repository": str(root / "fleet-backups"), "password": "e2e-fleet"}
        }
        await add_agent(running, "node-a", (31200, 31399), fleet)
        await add_agent(running, "node-b", (31400, 31599), fleet)

    try:
        asyncio.run(assemble())
        yield running
    finally:
        for agent in running.agents.values():
            agent.stop()
        running.controlplane.stop()
        remove_session_containers()
