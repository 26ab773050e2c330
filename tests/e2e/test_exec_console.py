"""`encedeus exec` and `encedeus console` driven in a real pseudo-terminal against a
whole system (`encedeus up`): a shell in the container with resize and the remote
exit code, the console's history, commands and Ctrl-] leaving the server running,
and the record of every exec."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest

from controlplane.client.api import ApiClient
from tests.conftest import TEST_IMAGE
from tests.e2e.pty_support import PtyProcess
from tests.e2e.single_host_support import ENCEDEUS, SingleHost, running_stack

pytestmark = [pytest.mark.e2e, pytest.mark.docker]
PASSWORD = "exec-owner-pw-1"
ECHO = 'echo booted; while read l; do echo "got $l"; done'


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SingleHost]:
    data_dir = tmp_path_factory.mktemp("exec-e2e") / "encedeus"
    yield from running_stack(data_dir, port_range="31780-31789")


@pytest.fixture(scope="module")
def owner(stack: SingleHost, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """An account logged in with the CLI: the environment its commands run with."""
    body = ApiClient(stack.url).call(
        "POST", "/v1/auth/register",
        {"username": "execowner", "email": "execowner@example.com", "password": PASSWORD},
    )  # fmt: skip
    credentials = tmp_path_factory.mktemp("exec-cli") / "credentials"
    env = {**os.environ, "ENCEDEUS_CREDENTIALS": str(credentials), "TERM": "xterm"}
    subprocess.run(
        [ENCEDEUS, "login", "--url", stack.url, "execowner", "--password", PASSWORD],
        env=env, check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    env["ACCESS_TOKEN"] = body["access_token"]
    return env


def running_app(stack: SingleHost, env: dict[str, str], name: str) -> str:
    client = ApiClient(stack.url, env["ACCESS_TOKEN"])
    created = client.call(
        "POST", "/v1/deployments", {"app_name": name, "image": TEST_IMAGE, "command": ECHO}
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status = client.call("GET", f"/v1/deployments/{created['id']}/status")
        if status["replicas"]["ready"] == 1:
            return str(created["id"])
        time.sleep(0.3)
    raise AssertionError(f"{name} not running: {status}")


def sessions(stack: SingleHost, env: dict[str, str], deployment: str) -> list[dict[str, Any]]:
    client = ApiClient(stack.url, env["ACCESS_TOKEN"])
    listed: list[dict[str, Any]] = client.call(
        "GET", f"/v1/deployments/{deployment}/exec-sessions"
    )["exec_sessions"]
    return listed


def test_exec_gives_a_shell_that_follows_the_terminal(
    stack: SingleHost, owner: dict[str, str]
) -> None:
    deployment = running_app(stack, owner, "shell")
    terminal = PtyProcess([ENCEDEUS, "exec", "shell"], owner, rows=30, columns=100)
    try:
        terminal.expect(rb"\$ ")  # an unprivileged shell (uid 988 by default)
        terminal.send(b"stty size\r")
        terminal.expect(rb"\r\n30 100\r\n")
        terminal.resize(42, 132)
        # SIGWINCH reaches the CLI while it may be reading what is typed next: ask
        # until the new size has travelled to the container.
        sizes: list[bytes] = []
        while b"42 132" not in sizes[-1:] and len(sizes) < 50:
            terminal.send(b"stty size\r")
            sizes.append(terminal.expect(rb"\r\n(\d+ \d+)\r\n").group(1))
        assert set(sizes) <= {b"30 100", b"42 132"}
        assert sizes[-1] == b"42 132"
        terminal.send(b"exit 3\r")
        assert terminal.wait() == 3
    finally:
        terminal.close()
    one_shot = PtyProcess([ENCEDEUS, "exec", "shell", "--", "sh", "-c", "exit 5"], owner)
    try:
        assert one_shot.wait() == 5
    finally:
        one_shot.close()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        recorded = sessions(stack, owner, deployment)
        if all(s["ended_at"] for s in recorded):
            break
        time.sleep(0.2)
    assert [(s["command"], s["exit_code"], s["username"]) for s in recorded] == [
        (["sh", "-c", "exit 5"], 5, "execowner"),
        (["/bin/sh"], 3, "execowner"),
    ]


def test_console_shows_history_sends_commands_and_leaves(
    stack: SingleHost, owner: dict[str, str]
) -> None:
    deployment = running_app(stack, owner, "echoer")
    terminal = PtyProcess([ENCEDEUS, "console", "echoer"], owner)
    try:
        terminal.expect(rb"booted")  # the history
        terminal.send(b"hello\r")
        terminal.expect(rb"got hello")
        terminal.send(b"half a line\x1d")  # Ctrl-]: leave, the half line is not sent
        assert terminal.wait() == 0
    finally:
        terminal.close()
    assert b"got half" not in terminal.output
    client = ApiClient(stack.url, owner["ACCESS_TOKEN"])
    status = client.call("GET", f"/v1/deployments/{deployment}/status")
    assert status["replicas"]["ready"] == 1  # leaving does not stop the server


def test_exec_from_a_script_without_a_terminal(stack: SingleHost, owner: dict[str, str]) -> None:
    running_app(stack, owner, "scripted")

    def run(*command: str, **stdin: Any) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [ENCEDEUS, "exec", "scripted", "--", *command],
            env=owner, capture_output=True, text=True, timeout=60, **stdin,
        )  # fmt: skip

    closed = run("echo", "x", stdin=subprocess.DEVNULL)
    assert (closed.returncode, closed.stdout.strip()) == (0, "x"), closed.stderr
    for _ in range(3):  # input that outlives a quick command still gets its exit code
        piped = run("sh", "-c", "exit 3", input="\n")
        assert piped.returncode == 3, piped.stderr
