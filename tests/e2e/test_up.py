"""The newcomer's path: `encedeus up` in an empty directory, then register, deploy the
local test image and see it running — with the real agent on the real dockerd."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from common.ports import free_ports
from controlplane.client.api import ApiClient
from controlplane.single_host.state import UpState, save_state
from tests.conftest import TEST_IMAGE
from tests.docker_support import labelled_containers
from tests.e2e.single_host_support import (
    ENCEDEUS,
    SESSION_LABEL,
    remove_session_containers,
    start_up,
    stop_up,
)

pytestmark = [pytest.mark.e2e, pytest.mark.docker]
PORT_RANGE = "31700-31749"


def wait_running(client: ApiClient, deployment_id: str, timeout: float = 90) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        status = client.call("GET", f"/v1/deployments/{deployment_id}/status")
        if status["status"] == "running" and status["replicas"]["ready"] == 1:
            return status
        time.sleep(0.5)
    raise AssertionError(f"deployment not running: {status}")


def cli(credentials: Path, *args: str) -> str:
    env = {**os.environ, "ENCEDEUS_CREDENTIALS": str(credentials)}
    done = subprocess.run(
        [ENCEDEUS, *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def wait_logs(credentials: Path, app: str, lines: list[str]) -> bool:
    """Whether the app's log shows exactly `lines` within a few seconds."""
    for _ in range(40):
        if cli(credentials, "logs", app).splitlines() == lines:
            return True
        time.sleep(0.25)
    return False


def assert_enrolled_by_the_agent(data_dir: Path, node: dict[str, Any]) -> None:
    """The local agent enrolled itself: its own identity file and fingerprint, and no
    node secret or spent token in up.json."""
    assert oct((data_dir / "agent" / "node.json").stat().st_mode & 0o777) == "0o600"
    assert json.loads((data_dir / "agent" / "node.json").read_text())["node_id"] == node["id"]
    assert node["fingerprint"]["docker_version"]
    assert node["fingerprint"]["agent_version"]
    saved = json.loads((data_dir / "up.json").read_text())
    assert (saved["node_id"], saved["join_token"], saved["node_secret"]) == (node["id"], "", "")


@pytest.fixture
def session_containers_removed() -> Iterator[None]:
    """Whatever happens, the containers this session's agents made are removed."""
    try:
        yield
    finally:
        remove_session_containers()


@pytest.mark.usefixtures("session_containers_removed")
def test_up_register_deploy_running_then_restart(tmp_path: Path) -> None:
    data_dir = tmp_path / "encedeus"
    host = start_up(data_dir, port_range=PORT_RANGE)
    try:
        anonymous = ApiClient(host.url)
        account = anonymous.call(
            "POST",
            "/v1/auth/register",
            {"username": "newcomer", "email": "new@example.com", "password": "newcomer-pw-1"},
        )
        user = ApiClient(host.url, account["access_token"])
        created = user.call(
            "POST",
            "/v1/deployments",
            {"app_name": "hello", "image": TEST_IMAGE, "command": ["sleep", "3600"]},
        )
        wait_running(user, created["id"])

        labels = {"encedeus.deployment": created["id"], SESSION_LABEL[0]: SESSION_LABEL[1]}
        running = labelled_containers(labels, running_only=True)
        assert len(running) == 1
        assert running[0].status == "running"

        next_login = next(line for line in host.output if " login --url " in line).split()[0]
        assert next_login == "encedeus" or Path(next_login).is_file(), next_login
        credentials = tmp_path / "credentials"
        cli(credentials, "login", "--url", host.url, "newcomer", "--password", "newcomer-pw-1")
        assert oct(credentials.stat().st_mode & 0o777) == "0o600"
        listing = cli(credentials, "ls")
        assert "hello" in listing
        assert "running" in listing

        # -c is a shell command line; the words after -- are the argv, with no shell.
        deployed = cli(credentials, "deploy", TEST_IMAGE, "--name", "cli-app",
                       "-c", "echo started; uname; sleep 3600")  # fmt: skip
        assert "Running." in deployed
        assert wait_logs(credentials, "cli-app", ["started", "Linux"])
        cli(credentials, "deploy", TEST_IMAGE, "--name", "argv-app", "--detach",
            "--", "sh", "-c", "echo 'a; uname'; sleep 3600")  # fmt: skip
        assert wait_logs(credentials, "argv-app", ["a; uname"])
        assert cli(credentials, "tasks", "run", TEST_IMAGE, "-c", "echo a; uname").split("\n")[
            :2
        ] == ["a", "Linux"]
        assert cli(credentials, "tasks", "run", TEST_IMAGE, "--", "echo", "a; uname") == (
            "a; uname\n"
        )
        cli(credentials, "rm", "argv-app")
        shown = cli(credentials, "status", "cli-app")
        assert "cli-app: running" in shown
        assert re.search(r"running .* newcomer\.[0-9a-f]{8}", shown), shown
        assert "cli-app scaled to 2 replicas" in cli(credentials, "scale", "cli-app", "2")
        env = {**os.environ, "ENCEDEUS_CREDENTIALS": str(credentials)}
        ghost = subprocess.run(
            [ENCEDEUS, "deploy", "encedeus/absent:never", "--name", "ghost",
             "--pull-policy", "never"],
            env=env, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert ghost.returncode == 1
        assert "not present on this node" in ghost.stderr, ghost.stderr
        assert "last error: " in cli(credentials, "status", "ghost")
        assert "Stopped." in cli(credentials, "stop", "cli-app")  # waits for the replicas
        assert "stopped" in cli(credentials, "ls", "--status", "stopped")
        password = host.admin_password
    finally:
        code = stop_up(host)
    assert code == 0, "".join(host.output)
    assert oct((data_dir / "up.json").stat().st_mode & 0o777) == "0o600"

    again = start_up(data_dir, port_range=PORT_RANGE)
    try:
        assert again.admin_password == password
        admin = ApiClient(again.url)
        token = admin.call(
            "POST", "/v1/auth/login", {"username": again.admin_username, "password": password}
        )["access_token"]
        nodes = ApiClient(again.url, token).call("GET", "/v1/nodes")["nodes"]
        assert [n["name"] for n in nodes] == ["local"]
        assert nodes[0]["status"] == "ready"
        assert_enrolled_by_the_agent(data_dir, nodes[0])
    finally:
        stop_up(again)


def test_up_stops_with_a_message_when_the_agent_cannot_start(tmp_path: Path) -> None:
    data_dir = tmp_path / "encedeus"
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        http, sftp = free_ports(2)
        ports = {"grpc": busy.getsockname()[1], "http": http, "sftp": sftp}
        save_state(data_dir, UpState(agent_ports=ports))
        done = subprocess.run(
            [ENCEDEUS, "up", "--data-dir", str(data_dir), "--port", "0",
             "--port-range", "31750-31751"],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    assert "The agent exited" in done.stdout


def test_up_refuses_saved_agent_ports_that_collide(tmp_path: Path) -> None:
    data_dir = tmp_path / "encedeus"
    grpc, shared = free_ports(2)
    save_state(data_dir, UpState(agent_ports={"grpc": grpc, "http": shared, "sftp": shared}))
    done = subprocess.run(
        [ENCEDEUS, "up", "--data-dir", str(data_dir), "--port", "0"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    assert "agent's sftp listener a port another listener has" in done.stderr
    assert not (data_dir / "agent.log").exists()


def test_up_says_when_its_port_is_taken(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        done = subprocess.run(
            [ENCEDEUS, "up", "--data-dir", str(tmp_path / "encedeus"),
             "--port", str(busy.getsockname()[1])],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    assert "is another `encedeus up` running?" in done.stderr


def _curl(url: str) -> tuple[int, str]:
    """(status, body) of one GET with the real curl, which resolves `*.localhost` to
    loopback itself (no DNS, no hosts file); status 0 when nothing answered."""
    done = subprocess.run(
        ["curl", "-sS", "-m", "5", "-o", "-", "-w", "\n%{http_code}", url],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    body, _, code = done.stdout.rpartition("\n")
    return int(code or 0), body


@pytest.mark.usefixtures("session_containers_removed")
def test_up_serves_a_web_app_at_its_localhost_url(tmp_path: Path) -> None:
    """One machine, no DNS: the banner names the ingress port, a web app deployed on
    `encedeus up` answers at http://<app>.localhost:<port>/ at once, and its URL in
    the API and `encedeus status` is that one."""
    host = start_up(tmp_path / "encedeus", port_range=PORT_RANGE)
    try:
        apps = next(line for line in host.output if "Apps: " in line)
        found = re.search(r"Apps: http://<app>\.localhost:(\d+)/", apps)
        assert found, apps
        port = int(found.group(1))
        body = {"username": "webber", "email": "web@example.com", "password": "webber-pw-1"}
        account = ApiClient(host.url).call("POST", "/v1/auth/register", body)
        user = ApiClient(host.url, account["access_token"])
        page = 'echo "hello from web" > /tmp/index.html && exec httpd -f -p 8080 -h /tmp'
        created = user.call(
            "POST",
            "/v1/deployments",
            {"app_name": "web", "image": TEST_IMAGE, "command": page, "ports": [8080]},
        )
        url = f"http://web.localhost:{port}"
        assert created["url"] == url
        wait_running(user, created["id"])
        deadline = time.monotonic() + 10
        while (answer := _curl(url + "/")) != (200, "hello from web\n"):
            assert time.monotonic() < deadline, answer
            time.sleep(0.2)
        assert _curl(f"http://nothing.localhost:{port}/")[0] == 404
        credentials = tmp_path / "credentials"
        cli(credentials, "login", "--url", host.url, "webber", "--password", "webber-pw-1")
        assert url in cli(credentials, "status", "web")
    finally:
        stop_up(host)
