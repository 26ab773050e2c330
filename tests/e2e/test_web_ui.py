"""The web UI in a real browser (Debian's chromium, headless, driven by Playwright)
against a whole system (`encedeus up`: control plane, agent, the real dockerd): sign
in (kept over a reload), create a server from the bundled `sh-game` template (a rule
error shown beside its field first), a console command typed in the page answered in
the terminal, the CPU graph filling from live stats, a file uploaded (straight to the
agent, CORS) and downloaded byte-identical, a shell (exec) typed into and left with
its exit code, a text file edited in the page and read back from the node, a file
renamed and deleted, stop and start with the buttons, delete from the settings.
A wrong password shows the error; the account and nodes pages work, also at 375 px. A
new account changes its password and signs in with it, runs a task with an uploaded
input file (live log, exit code), and an administrator disables it.
Screenshots land in each test's temporary folder.

Never `playwright install`: the browser is `/usr/bin/chromium` (scripts/setup-system.sh).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, FilePayload, Locator, Page, expect, sync_playwright

from controlplane.api.ui_assets import DEFAULT_DIST
from tests.conftest import TEST_IMAGE
from tests.e2e.single_host_support import SingleHost, running_stack

pytestmark = [pytest.mark.e2e, pytest.mark.docker]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--disable-background-networking", "--disable-component-update", "--no-first-run"]
WAIT_MS = 60_000
expect.set_options(timeout=WAIT_MS)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SingleHost]:
    assert (DEFAULT_DIST / "index.html").is_file(), "the web UI is not built: run `make ui`"
    data_dir = tmp_path_factory.mktemp("web-ui-e2e") / "encedeus"
    yield from running_stack(data_dir, port_range="31740-31749")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser: Browser, stack: SingleHost) -> Iterator[Page]:
    context = browser.new_context(base_url=stack.url, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(WAIT_MS)
    page = context.new_page()
    try:
        yield page
    finally:
        context.close()


def sign_in(page: Page, account: str, password: str) -> None:
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/login$"))
    page.get_by_label("Email or username").fill(account)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


def test_a_wrong_password_shows_the_error(page: Page, stack: SingleHost, tmp_path: Path) -> None:
    sign_in(page, stack.admin_username, "not-the-password")
    expect(page.get_by_role("alert")).to_contain_text(re.compile("invalid", re.IGNORECASE))
    expect(page).to_have_url(re.compile(r"/login$"))
    page.screenshot(path=tmp_path / "login-error.png")


def test_a_server_from_create_to_delete(page: Page, stack: SingleHost, tmp_path: Path) -> None:
    sign_in(page, stack.admin_username, stack.admin_password)
    expect(page.get_by_role("heading", name="Servers")).to_be_visible()
    # A second tab on the list: it learns of the new server from the notifications
    # socket, with no reload (the shared refresh cookie signs it in).
    watcher = page.context.new_page()
    watcher.goto("/servers")
    expect(watcher.get_by_text("No servers yet.")).to_be_visible()  # loaded, before the create
    page.get_by_role("link", name="New server").click()

    page.get_by_label("Name", exact=True).fill("ui-game")
    page.get_by_role("combobox", name="Template").select_option("sh-game")
    players = page.get_by_label("Maximum players *")
    players.fill("99")
    page.get_by_role("button", name="Create").click()
    expect(page.locator('[data-error-for="MAX_PLAYERS"]')).to_have_text("must be at most 64")
    page.screenshot(path=tmp_path / "create-error.png")
    players.fill("4")
    page.get_by_role("button", name="Create").click()

    expect(page).to_have_url(re.compile(r"/servers/[0-9a-f-]{36}$"))
    expect(page.get_by_role("heading", name="ui-game")).to_be_visible()
    # Nothing long-lived is readable by scripts, yet a reload keeps the session
    # (the refresh token is in an HttpOnly cookie).
    assert page.evaluate("() => localStorage.length + sessionStorage.length") == 0
    assert "encedeus_refresh" not in page.evaluate("() => document.cookie")
    page.reload()
    expect(page.get_by_role("heading", name="ui-game")).to_be_visible()
    terminal = page.get_by_test_id("terminal")
    expect(terminal).to_contain_text("is ready for players", timeout=120_000)

    listed = watcher.get_by_role("list", name="Servers").get_by_role(
        "link", name=re.compile("ui-game")
    )
    expect(listed.locator('[data-status="running"]')).to_have_count(1)
    watcher.close()

    page.get_by_label("Command").fill("say hello-from-the-browser")
    page.get_by_label("Command").press("Enter")
    expect(terminal).to_contain_text("[Server] hello-from-the-browser")

    cpu_points = page.get_by_test_id("graph-CPU-points")
    expect(cpu_points).not_to_have_text("0")
    page.screenshot(path=tmp_path / "server.png", full_page=True)

    page.get_by_role("navigation", name="Server").get_by_role("link", name="Shell").click()
    page.get_by_role("button", name="Open shell").click()
    expect(page.get_by_test_id("shell-state")).to_contain_text("Connected")
    shell = page.get_by_test_id("shell-terminal")
    shell.click()
    page.keyboard.type("echo shell-$((6*7))\n")
    expect(shell).to_contain_text("shell-42")
    page.keyboard.type("exit 3\n")
    expect(page.get_by_test_id("shell-state")).to_contain_text("exit code 3")

    page.get_by_role("navigation", name="Server").get_by_role("link", name="Files").click()
    payload = bytes(range(256)) * 1024  # 256 KiB, every byte value
    page.get_by_label("Upload files").set_input_files(
        files=FilePayload(name="upload.bin", mimeType="application/octet-stream", buffer=payload)
    )
    listing = page.get_by_role("list", name="Files in this folder")
    expect(listing).to_contain_text("upload.bin")
    with page.expect_download() as download_info:
        page.get_by_role("button", name="Download upload.bin").click()
    downloaded = download_info.value
    assert downloaded.suggested_filename == "upload.bin"
    assert Path(downloaded.path()).read_bytes() == payload
    edit_a_text_file(page, listing)
    page.get_by_role("button", name="Rename upload.bin").click()
    page.get_by_label("New name for upload.bin").fill("renamed.bin")
    page.get_by_role("button", name="Save name").click()
    expect(listing).to_contain_text("renamed.bin")
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Delete renamed.bin").click()
    expect(listing).not_to_contain_text("renamed.bin")

    status = page.locator("[data-status]").first
    page.get_by_role("button", name="Stop", exact=True).click()
    expect(status).to_have_attribute("data-status", "stopped")
    page.get_by_role("button", name="Start", exact=True).click()
    expect(status).to_have_attribute("data-status", "running")
    expect(terminal).to_contain_text("Saved count=0, stopping")

    page.get_by_role("navigation", name="Server").get_by_role("link", name="Settings").click()
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Delete server").click()
    expect(page).to_have_url(re.compile(r"/servers$"))
    expect(page.get_by_text("ui-game")).to_have_count(0)
    page.screenshot(path=tmp_path / "servers-after-delete.png")


def edit_a_text_file(page: Page, listing: Locator) -> None:
    """Edit a file in the plain editor, save it (straight to the agent) and download
    what the node stored."""
    page.get_by_label("Upload files").set_input_files(
        files=FilePayload(name="motd.txt", mimeType="text/plain", buffer=b"before\n")
    )
    expect(listing).to_contain_text("motd.txt")
    page.get_by_role("button", name="Edit motd.txt").click()
    editor = page.get_by_label("Contents of /motd.txt")
    expect(editor).to_have_value("before\n")
    editor.fill("after: édité\n")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.get_by_role("status").filter(has_text="Saved")).to_be_visible()
    page.get_by_role("button", name="Close editor").click()
    with page.expect_download() as download_info:
        page.get_by_role("button", name="Download motd.txt").click()
    assert Path(download_info.value.path()).read_text("utf-8") == "after: édité\n"


def test_api_keys_and_nodes_pages(page: Page, stack: SingleHost, tmp_path: Path) -> None:
    sign_in(page, stack.admin_username, stack.admin_password)
    page.get_by_role("link", name="Account").click()
    page.get_by_label("Key name", exact=True).fill("ui-key")
    page.get_by_role("button", name="Create key").click()
    secret = page.get_by_test_id("new-api-key")
    expect(secret).to_have_value(re.compile(r"^enc_"))
    keys = page.get_by_role("list", name="API keys")
    expect(keys).to_contain_text("ui-key")
    page.get_by_role("button", name="Done").click()
    expect(secret).to_have_count(0)  # shown once
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Revoke ui-key").click()
    expect(page.get_by_text("No API keys.")).to_be_visible()

    page.get_by_role("link", name="Nodes").click()
    expect(
        page.get_by_role("list", name="Nodes").locator('[data-node-status="ready"]')
    ).to_have_count(1)
    page.emulate_media(color_scheme="dark")
    page.screenshot(path=tmp_path / "nodes-dark.png")
    background = page.evaluate("() => getComputedStyle(document.body).backgroundColor")
    assert background != "rgb(255, 255, 255)", "dark mode does not follow the system"
    page.set_viewport_size({"width": 375, "height": 800})
    page.screenshot(path=tmp_path / "nodes-375.png", full_page=True)
    width = page.evaluate("() => document.documentElement.scrollWidth")
    assert width <= 375, f"the page scrolls sideways at 375 px ({width} px wide)"


def test_a_new_account_changes_its_password_runs_a_task_and_an_admin_disables_it(
    page: Page, stack: SingleHost, tmp_path: Path
) -> None:
    page.goto("/register")
    page.get_by_label("Username").fill("ui-member")
    page.get_by_label("Email").fill("ui-member@example.com")
    page.get_by_label("Password").fill("first-password")
    page.get_by_role("button", name="Register").click()
    expect(page.get_by_role("heading", name="Servers")).to_be_visible()

    page.get_by_role("link", name="Account").click()
    page.get_by_label("Current password", exact=True).fill("first-password")
    page.get_by_label("New password", exact=True).fill("second-password")
    page.get_by_label("New password again").fill("second-password")
    page.get_by_role("button", name="Change password").click()
    expect(page.get_by_role("status").filter(has_text="Password changed")).to_be_visible()
    page.get_by_role("button", name="Sign out").click()
    sign_in(page, "ui-member", "first-password")
    expect(page.get_by_role("alert")).to_contain_text(re.compile("invalid", re.IGNORECASE))
    page.get_by_label("Password").fill("second-password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Servers")).to_be_visible()

    # A task with an uploaded input file: run, its live log, its exit code.
    page.get_by_role("link", name="Tasks").click()
    page.get_by_label("Image").fill(TEST_IMAGE)
    page.get_by_label("Command (run by sh -c; optional)").fill("cat input.txt; exit 7")
    page.get_by_label("Input files to upload").set_input_files(
        files=FilePayload(name="input.txt", mimeType="text/plain", buffer=b"from-the-browser\n")
    )
    page.get_by_role("button", name="Create task").click()
    expect(page).to_have_url(re.compile(r"/tasks/[0-9a-f-]{36}$"))
    page.get_by_role("button", name="Run").click()
    expect(page.get_by_test_id("task-log")).to_contain_text("from-the-browser")
    expect(page.get_by_test_id("task-status")).to_have_text("Failed")
    expect(page.get_by_test_id("task-exit-code")).to_have_text("7")
    page.screenshot(path=tmp_path / "task.png", full_page=True)
    page.get_by_role("button", name="Sign out").click()

    sign_in(page, stack.admin_username, stack.admin_password)
    page.get_by_role("link", name="Users").click()
    member = (
        page.get_by_role("list", name="Users").get_by_role("listitem").filter(has_text="ui-member")
    )
    page.once("dialog", lambda dialog: dialog.accept())
    member.get_by_role("button", name="Disable ui-member").click()
    expect(member.get_by_test_id("disabled")).to_be_visible()
    page.get_by_role("button", name="Sign out").click()
    sign_in(page, "ui-member", "second-password")
    expect(page.get_by_role("alert")).to_be_visible()
    expect(page).to_have_url(re.compile(r"/login$"))
