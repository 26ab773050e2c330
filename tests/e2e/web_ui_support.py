"""What the browser tests of the web UI share: Debian's chromium (never `playwright
install`), signing in, accounts and servers made through the API, and the UI's page
table (ui/src/routes.ts) read so that every page, later ones included, is walked.
"""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from playwright.sync_api import Page, expect

from controlplane.client.api import ApiClient
from tests.e2e.single_host_support import SingleHost

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--disable-background-networking", "--disable-component-update", "--no-first-run"]
WAIT_MS = 60_000
ROUTES_FILE = Path(__file__).resolve().parents[2] / "ui" / "src" / "routes.ts"
_ENTRY = re.compile(r'^\s*\{\s*pattern:\s*"(?P<path>/[^"]*)",\s*access:\s*"(?P<access>\w+)"', re.M)


@dataclass(frozen=True, slots=True)
class UiRoute:
    """One entry of the UI's page table: its path pattern and who sees it."""

    path: str
    access: str  # public | user | admin

    @property
    def parameters(self) -> list[str]:
        return [part for part in self.path.split("/") if part.startswith(":")]


def ui_routes() -> list[UiRoute]:
    """Every page the UI declares, in its table's order."""
    text = ROUTES_FILE.read_text(encoding="utf-8")
    routes = [UiRoute(m["path"], m["access"]) for m in _ENTRY.finditer(text)]
    declared = text.count("pattern:")
    assert 0 < len(routes) == declared, (
        f"{ROUTES_FILE}: read {len(routes)} of {declared} pages; keep each entry on one "
        'line as { pattern: "...", access: "...", ... }'
    )
    return routes


SERVER_TABS_FILE = ROUTES_FILE.parent / "lib" / "deployments.ts"
_TAB = re.compile(r'^\s*\{\s*tab:\s*"(?P<tab>[a-z]*)",\s*label:', re.M)


def server_tabs() -> list[str]:
    """The server page's tabs (`SERVER_TABS`: "" is the console), in their order."""
    text = SERVER_TABS_FILE.read_text(encoding="utf-8")
    table = text[text.index("export const SERVER_TABS") :]
    table = table[: table.index("] as const")]
    tabs = [m["tab"] for m in _TAB.finditer(table)]
    assert 0 < len(tabs) == table.count("tab:"), (
        f"{SERVER_TABS_FILE}: keep each of SERVER_TABS on one line as "
        '{ tab: "...", label: "..." }'
    )
    return tabs


@dataclass(frozen=True, slots=True)
class ApiAccount:
    """An account registered through the API, and a client signed in as it."""

    username: str
    password: str
    client: ApiClient


def register_account(stack: SingleHost, prefix: str) -> ApiAccount:
    """A fresh account (not an administrator)."""
    username = f"{prefix}-{uuid.uuid4().hex[:6]}"
    password = f"{username}-password"
    body = {"username": username, "email": f"{username}@example.com", "password": password}
    grant = ApiClient(stack.url).call("POST", "/v1/auth/register", body)
    return ApiAccount(username, password, ApiClient(stack.url, grant["access_token"]))


def sign_in_by_api(stack: SingleHost, username: str, password: str) -> ApiClient:
    grant = ApiClient(stack.url).call(
        "POST", "/v1/auth/login", {"username": username, "password": password}
    )
    return ApiClient(stack.url, grant["access_token"])


def create_game_server(client: ApiClient, name: str, timeout: float = 120.0) -> str:
    """A server from the bundled `sh-game` template, running; its id."""
    created: dict[str, Any] = client.call(
        "POST",
        "/v1/deployments",
        {"app_name": name, "template": "sh-game", "variables": {"MAX_PLAYERS": "4"}},
    )
    deadline = time.monotonic() + timeout
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        status = client.call("GET", f"/v1/deployments/{created['id']}/status")
        if status["status"] == "running" and status["replicas"]["ready"] == 1:
            return str(created["id"])
        time.sleep(0.5)
    raise AssertionError(f"{name} is not running: {status}")


def backup_of(client: ApiClient, server_id: str, name: str, locked: bool = False) -> str:
    """A completed backup of the server's files; its id."""
    path = f"/v1/deployments/{server_id}/backups"
    backup: dict[str, Any] = client.call("POST", path, {"name": name, "locked": locked})
    deadline = time.monotonic() + 60.0
    while backup["state"] not in ("completed", "failed") and time.monotonic() < deadline:
        time.sleep(0.3)
        backup = client.call("GET", f"{path}/{backup['id']}")
    assert backup["state"] == "completed", backup
    return str(backup["id"])


def sign_in(page: Page, account: str, password: str) -> None:
    """Sign in through the login page (the app sends a signed-out visitor there)."""
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/login$"))
    page.get_by_label("Email or username").fill(account)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
