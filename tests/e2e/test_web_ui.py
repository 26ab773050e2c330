"""The web UI in a real browser (Debian's chromium, headless, driven by Playwright)
against a whole system (`encedeus up`: control plane, agent, the real dockerd): sign
in (kept over a reload), create a server from the bundled `sh-game` template (a rule
error shown beside its field first), a console command typed in the page answered in
the terminal, the CPU graph filling from live stats, a file uploaded (straight to the
agent, CORS) and downloaded byte-identical, a shell (exec) typed into and left with
its exit code, a text file edited in the page and read back from the node, a file
renamed and deleted, a backup made and seen completed, stop and start with the
buttons, delete from the settings. A wrong password shows the error; another
account's server is "not found"; a session ended elsewhere goes back to sign-in; the
account page works; on the nodes page a node is added (join token and agent config
shown once), the running node drained and undrained, the added one deleted; also at
375 px. A new account changes its password and signs in with it, runs a task with an
uploaded input file (live log, exit code), and an administrator disables it.
Screenshots land in each test's temporary folder; every page is walked (screenshots,
accessibility) in test_web_ui_pages.py. The system and the browser are shared by the
whole suite (tests/e2e/conftest.py).

Never `playwright install`: the browser is `/usr/bin/chromium` (scripts/setup-system.sh).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import FilePayload, Locator, Page, WebSocket, expect

from tests.conftest import TEST_IMAGE
from tests.e2e.single_host_support import SingleHost
from tests.e2e.web_ui_support import register_account, sign_in, sign_in_by_api

pytestmark = [pytest.mark.e2e, pytest.mark.docker]


def test_a_wrong_password_shows_the_error(page: Page, ui_stack: SingleHost, tmp_path: Path) -> None:
    sign_in(page, ui_stack.admin_username, "not-the-password")
    expect(page.get_by_role("alert")).to_contain_text(re.compile("invalid", re.IGNORECASE))
    expect(page).to_have_url(re.compile(r"/login$"))
    page.screenshot(path=tmp_path / "login-error.png")


def test_a_server_from_create_to_delete(page: Page, ui_stack: SingleHost, tmp_path: Path) -> None:
    sign_in(page, ui_stack.admin_username, ui_stack.admin_password)
    expect(page.get_by_role("heading", name="Servers")).to_be_visible()
    # A second tab on the list: it learns of the new server from the notifications
    # socket, with no reload (the shared refresh cookie signs it in).
    watcher = page.context.new_page()
    watcher.goto("/servers")
    expect(watcher.get_by_role("heading", name="Servers")).to_be_visible()
    expect(watcher.get_by_text("Loading…")).to_have_count(0)  # loaded, before the create
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
    sockets: list[WebSocket] = []
    page.on("websocket", lambda socket: sockets.append(socket))
    page.reload()
    expect(page.get_by_role("heading", name="ui-game")).to_be_visible()
    terminal = page.get_by_test_id("terminal")
    expect(terminal).to_contain_text("is ready for players", timeout=120_000)
    # The console socket goes to the address `up` advertises for browsers.
    assert any(socket.url.startswith("ws://localhost:") for socket in sockets)

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

    # A backup: made in the page, seen completed when its event arrives (no reload).
    page.get_by_role("navigation", name="Server").get_by_role("link", name="Backups").click()
    page.get_by_label("Backup name (optional)").fill("ui-backup")
    page.get_by_role("button", name="Create backup").click()
    backups = page.get_by_role("list", name="Backups").get_by_role("listitem")
    made = backups.filter(has_text="ui-backup").locator("[data-backup-state]")
    expect(made).to_have_attribute("data-backup-state", "completed")
    expect(backups.filter(has_text="ui-backup")).to_contain_text("sha256:")

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


def test_api_keys_and_nodes_pages(page: Page, ui_stack: SingleHost, tmp_path: Path) -> None:
    sign_in(page, ui_stack.admin_username, ui_stack.admin_password)
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
    nodes = page.get_by_role("list", name="Nodes")
    expect(nodes.locator('[data-node-status="ready"]')).to_have_count(1)
    check_nodes_page(page, ui_stack)
    page.emulate_media(color_scheme="dark")
    page.screenshot(path=tmp_path / "nodes-dark.png")
    background = page.evaluate("() => getComputedStyle(document.body).backgroundColor")
    assert background != "rgb(255, 255, 255)", "dark mode does not follow the system"
    page.set_viewport_size({"width": 375, "height": 800})
    page.screenshot(path=tmp_path / "nodes-375.png", full_page=True)
    width = page.evaluate("() => document.documentElement.scrollWidth")
    assert width <= 375, f"the page scrolls sideways at 375 px ({width} px wide)"


def check_nodes_page(page: Page, ui_stack: SingleHost) -> None:
    """Add a node (token and agent config shown once), drain and undrain the running
    node, delete the added one."""
    page.get_by_label("Node name").fill("ui-node")
    page.get_by_label("First port").fill("31000")
    page.get_by_label("Last port").fill("31099")
    page.get_by_role("button", name="Add node").click()
    token = page.get_by_test_id("join-token")
    expect(token).to_have_value(re.compile(r"^encjoin_"))
    snippet = page.get_by_test_id("agent-snippet").input_value()
    assert f'join_token       = "{token.input_value()}"' in snippet
    assert f'controlplane_url = "{ui_stack.ui_url}"' in snippet
    assert "start = 31000" in snippet
    assert "end   = 31099" in snippet
    page.get_by_role("button", name="Done").click()
    expect(token).to_have_count(0)  # shown once
    nodes = page.get_by_role("list", name="Nodes")
    added = nodes.get_by_role("listitem", name="ui-node")
    expect(added.locator('[data-node-status="pending"]')).to_have_count(1)

    running = nodes.get_by_role("listitem").filter(has=page.locator('[data-node-status="ready"]'))
    page.once("dialog", lambda dialog: dialog.accept())
    running.get_by_role("button", name=re.compile("^Drain ")).click()
    expect(nodes.locator('[data-node-status="draining"]')).to_have_count(1)
    nodes.get_by_role("button", name=re.compile("^Undrain ")).click()
    expect(nodes.locator('[data-node-status="ready"]')).to_have_count(1)

    added.get_by_role("button", name="Delete ui-node").click()
    page.get_by_role("group", name="Delete ui-node").get_by_role(
        "button", name="Delete node"
    ).click()
    expect(page.get_by_role("status").filter(has_text="Node deleted")).to_be_visible()
    expect(added).to_have_count(0)


def test_another_accounts_server_is_not_found(page: Page, ui_stack: SingleHost) -> None:
    owner = register_account(ui_stack, "owner")
    # No replica: the page's answer depends on the owner only, and nothing has to stop.
    body = {"app_name": "private-game", "image": TEST_IMAGE, "replicas": 0}
    server_id = owner.client.call("POST", "/v1/deployments", body)["id"]
    stranger = register_account(ui_stack, "stranger")
    sign_in(page, stranger.username, stranger.password)
    expect(page.get_by_role("heading", name="Servers")).to_be_visible()
    page.goto(f"/servers/{server_id}")
    expect(page.get_by_role("alert")).to_have_text("Server not found.")
    expect(page.get_by_role("heading", name="private-game")).to_have_count(0)
    owner.client.call("DELETE", f"/v1/deployments/{server_id}")


def test_an_ended_session_goes_back_to_sign_in(page: Page, ui_stack: SingleHost) -> None:
    """The session is revoked elsewhere (a password change ends every other session):
    the next page the browser opens finds its access token refused and its refresh
    cookie spent, and shows the sign-in page."""
    account = register_account(ui_stack, "leaver")
    sign_in(page, account.username, account.password)
    expect(page.get_by_role("heading", name="Servers")).to_be_visible()
    elsewhere = sign_in_by_api(ui_stack, account.username, account.password)
    new_password = f"{account.password}-2"
    elsewhere.call(
        "PUT",
        "/v1/user/password",
        {"current_password": account.password, "new_password": new_password},
    )
    page.get_by_role("link", name="Account").click()  # an in-app navigation, no reload
    expect(page).to_have_url(re.compile(r"/login$"))
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    page.goto("/account")  # and a fresh load: the cookie no longer signs in
    expect(page).to_have_url(re.compile(r"/login$"))


def test_a_new_account_changes_its_password_runs_a_task_and_an_admin_disables_it(
    page: Page, ui_stack: SingleHost, tmp_path: Path
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

    sign_in(page, ui_stack.admin_username, ui_stack.admin_password)
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
