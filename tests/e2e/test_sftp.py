"""SFTP through the whole system: `encedeus up`, a real account and deployment, the
real OpenSSH client, and the control plane's own credential check
(`POST /v1/remote/sftp/auth`) behind the agent's login."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncssh
import pytest

from controlplane.client.api import ApiClient
from tests.agent.sftp.conftest import Result, requires_sftp_client, run_sftp
from tests.conftest import TEST_IMAGE
from tests.docker_support import docker_engine, labelled
from tests.e2e.single_host_support import SingleHost, running_stack

pytestmark = [pytest.mark.e2e, pytest.mark.docker, requires_sftp_client]
OWNER_PASSWORD = "owner-password-1"
OTHER_PASSWORD = "other-password-1"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SingleHost]:
    data_dir = tmp_path_factory.mktemp("sftp-e2e") / "encedeus"
    yield from running_stack(data_dir, port_range="31760-31779")


def sftp_port(host: SingleHost) -> int:
    state = json.loads((host.data_dir / "up.json").read_text())
    port: int = state["agent_ports"]["sftp"]
    return port


def account(host: SingleHost, username: str, password: str) -> ApiClient:
    body = ApiClient(host.url).call(
        "POST",
        "/v1/auth/register",
        {"username": username, "email": f"{username}@example.com", "password": password},
    )
    return ApiClient(host.url, body["access_token"])


def running_replica(client: ApiClient, deployment_id: str, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        status = client.call("GET", f"/v1/deployments/{deployment_id}/status")
        if status["status"] == "running" and status["replicas"]["ready"] == 1:
            replica: str = status["instances"][0]["id"]
            return replica
        time.sleep(0.3)
    raise AssertionError(f"deployment not running: {status}")


def exec_in(deployment_id: str, command: list[str]) -> tuple[int, bytes]:
    """Run `command` in the deployment's one running container."""
    with docker_engine() as engine:
        found = labelled(engine, {"encedeus.deployment": deployment_id}, running_only=True)
        assert len(found) == 1
        exit_code, output = found[0].exec_run(command)
        return exit_code, output


def sftp(host: SingleHost, login: str, password: str, commands: str, cwd: Path) -> Result:
    return asyncio.run(run_sftp(sftp_port(host), login, commands, password=password, cwd=cwd))


def test_owner_moves_files_both_ways_others_are_refused(stack: SingleHost, tmp_path: Path) -> None:
    owner = account(stack, "sftpowner", OWNER_PASSWORD)
    account(stack, "sftpother", OTHER_PASSWORD)
    deployment = owner.call(
        "POST",
        "/v1/deployments",
        {
            "app_name": "files",
            "image": TEST_IMAGE,
            "command": ["sh", "-c", "echo from-container > /data/made-inside.txt; sleep 3600"],
        },
    )
    server_id = running_replica(owner, deployment["id"])
    login = f"sftpowner.{server_id[:8]}"
    (tmp_path / "upload.txt").write_text("from-sftp\n")

    result = sftp(
        stack, login, OWNER_PASSWORD, "put upload.txt\nget made-inside.txt\nls -1\n", tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "made-inside.txt").read_text() == "from-container\n"
    assert "upload.txt" in result.stdout
    exit_code, output = exec_in(deployment["id"], ["cat", "/data/upload.txt"])
    assert (exit_code, output) == (0, b"from-sftp\n")
    # The container runs as an unprivileged user: the upload must be its own.
    appended = exec_in(deployment["id"], ["sh", "-c", "echo more >> /data/upload.txt && id -u"])
    assert appended == (0, b"988\n")

    other = sftp(stack, f"sftpother.{server_id[:8]}", OTHER_PASSWORD, "ls\n", tmp_path)
    assert other.returncode != 0
    wrong = sftp(stack, login, "not-the-password", "ls\n", tmp_path)
    assert wrong.returncode != 0


async def _session_outlives(port: int, login: str, delete: Any) -> float:
    """Open a session, run `delete`, and time how long the connection then lasts."""
    options = {"known_hosts": None, "client_keys": None, "agent_path": None}
    connection = await asyncssh.connect(
        "127.0.0.1", port, username=login, password=OWNER_PASSWORD, **options
    )
    try:
        async with connection.start_sftp_client() as client:
            assert await client.listdir(".") is not None
            started = time.monotonic()
            await asyncio.to_thread(delete)
            await asyncio.wait_for(connection.wait_closed(), timeout=30)
            return time.monotonic() - started
    finally:
        connection.close()


def test_deleting_the_deployment_ends_open_sessions(stack: SingleHost) -> None:
    owner = ApiClient(stack.url)
    token = owner.call(
        "POST", "/v1/auth/login", {"username": "sftpowner", "password": OWNER_PASSWORD}
    )["access_token"]
    owner = ApiClient(stack.url, token)
    deployment = owner.call(
        "POST",
        "/v1/deployments",
        {"app_name": "doomed", "image": TEST_IMAGE, "command": ["sleep", "3600"]},
    )
    server_id = running_replica(owner, deployment["id"])

    def delete() -> None:
        owner.call("DELETE", f"/v1/deployments/{deployment['id']}")

    lasted = asyncio.run(_session_outlives(sftp_port(stack), f"sftpowner.{server_id[:8]}", delete))
    assert lasted < 30
