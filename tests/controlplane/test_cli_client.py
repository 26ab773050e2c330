"""The `encedeus` client commands against a running control plane, over HTTP only."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from controlplane.cli import main
from controlplane.client.credentials import load_credentials
from tests.conftest import TEST_IMAGE
from tests.controlplane.accounts_support import PASSWORD, create_api_key, register

# The client is plain HTTP: one database engine is enough here.
pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.fixture
def credentials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "config" / "credentials"
    monkeypatch.setenv("ENCEDEUS_CREDENTIALS", str(path))
    monkeypatch.delenv("ENCEDEUS_URL", raising=False)
    monkeypatch.delenv("ENCEDEUS_TOKEN", raising=False)
    return path


def url_of(api: TestClient[Any, Any]) -> str:
    return str(api.make_url("")).rstrip("/")


async def encedeus(*args: str) -> int:
    # The client blocks (urllib); the server runs on this loop, so the client gets a thread.
    return await asyncio.to_thread(main, list(args))


async def test_login_stores_an_api_key_privately(
    api: TestClient[Any, Any], credentials: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    account = await register(api)
    code = await encedeus("login", "--url", url_of(api), account.username, "--password", PASSWORD)
    assert code == 0
    assert oct(credentials.stat().st_mode & 0o777) == "0o600"
    stored = json.loads(credentials.read_text())
    assert stored["token"].startswith("enc_")
    assert stored["url"] == url_of(api)
    assert await encedeus("whoami") == 0
    assert account.username in capsys.readouterr().out

    key = stored["token"]
    assert await encedeus("logout") == 0
    assert "its API key is revoked" in capsys.readouterr().out
    revoked = await api.get("/v1/user/profile", headers={"Authorization": f"Bearer {key}"})
    assert revoked.status == 401


async def test_validation_errors_name_the_fields(
    api: TestClient[Any, Any], credentials: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    await register(api)
    code = await encedeus("register", "--url", url_of(api), "someone", "someone@example.com",
                          "--password", "short")  # fmt: skip
    assert code == 1
    assert "body.password" in capsys.readouterr().err


async def test_login_with_an_api_key(
    api: TestClient[Any, Any], credentials: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    account = await register(api)
    key = await create_api_key(api, account)
    assert await encedeus("login", "--url", url_of(api), "--api-key", key) == 0
    assert load_credentials().token == key
    assert await encedeus("logout") == 0
    assert load_credentials().token == ""
    kept = await api.get("/v1/user/profile", headers={"Authorization": f"Bearer {key}"})
    assert kept.status == 200  # a key given to login is only forgotten
    assert await encedeus("whoami") == 1
    assert "not logged in" in capsys.readouterr().err


async def test_register_then_tasks_round_trip(
    api: TestClient[Any, Any],
    credentials: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    await register(api)  # the admin
    url = url_of(api)
    assert await encedeus("register", "--url", url, "cli-user", "cli@example.com",
                          "--password", "cli-user-pw1") == 0  # fmt: skip
    local = tmp_path / "input.txt"
    local.write_text("data")
    capsys.readouterr()
    code = await encedeus(
        "tasks", "create", TEST_IMAGE, "-c", "cat input.txt", "--file", str(local), "-e", "A=1"
    )
    assert code == 0
    task_id = capsys.readouterr().out.strip()
    assert await encedeus("tasks", "ls") == 0
    listing = capsys.readouterr().out
    assert task_id[:8] in listing
    assert "Pending" in listing
    assert await encedeus("tasks", "status", task_id[:8]) == 0  # as `tasks ls` shows it
    assert "Pending" in capsys.readouterr().out
    assert await encedeus("tasks", "rm", task_id) == 0
    assert await encedeus("tasks", "status", task_id) == 1
    assert "no task named" in capsys.readouterr().err


async def test_ls_and_errors_for_people(
    api: TestClient[Any, Any], credentials: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    account = await register(api)
    key = await create_api_key(api, account)
    assert await encedeus("login", "--url", url_of(api), account.username,
                          "--password", "wrong-password") == 1  # fmt: skip
    assert "invalid credentials" in capsys.readouterr().err
    assert await encedeus("login", "--url", url_of(api), "--api-key", key) == 0
    capsys.readouterr()
    assert await encedeus("ls") == 0
    assert capsys.readouterr().out.split() == [
        "ID", "NAME", "IMAGE", "STATUS", "REPLICAS", "URL", "CREATED",
    ]  # fmt: skip
    assert await encedeus("logs", "nothing-here") == 1
    assert "no deployment named" in capsys.readouterr().err
    assert await encedeus("logout") == 0
    assert await encedeus("ls") == 1
    assert "not logged in: run `encedeus login`" in capsys.readouterr().err
    assert await encedeus("login", "--url", url_of(api), "--api-key", key) == 0
    assert await encedeus("deploy", TEST_IMAGE, "-e", "broken") == 1
    assert "KEY=VALUE" in capsys.readouterr().err
    assert await encedeus("ls", "--url", "http://127.0.0.1:9") == 1
    assert "cannot reach" in capsys.readouterr().err


async def test_command_is_a_shell_line_with_c_and_an_argv_after_the_separator(
    api: TestClient[Any, Any], credentials: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    account = await register(api)
    key = await create_api_key(api, account)
    assert await encedeus("login", "--url", url_of(api), "--api-key", key) == 0
    headers = {"Authorization": f"Bearer {key}"}

    async def created_command(*args: str) -> list[str]:
        capsys.readouterr()
        assert await encedeus("tasks", "create", TEST_IMAGE, *args) == 0
        task_id = capsys.readouterr().out.strip()
        task = await (await api.get(f"/v1/tasks/{task_id}", headers=headers)).json()
        command: list[str] = task["command"]
        return command

    assert await created_command("-c", "echo a; uname") == ["/bin/sh", "-c", "echo a; uname"]
    assert await created_command("--", "echo", "a; uname") == ["echo", "a; uname"]
    assert await created_command("--name", "n", "--", "ls", "--name", "-c") == [
        "ls", "--name", "-c",
    ]  # fmt: skip
    assert await encedeus("tasks", "create", TEST_IMAGE, "-c", "x", "--", "y") == 1
    assert "not both" in capsys.readouterr().err
