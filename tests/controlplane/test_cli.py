"""`encedeus user create` and `encedeus controlplane` from the command line."""

from __future__ import annotations

import asyncio
import io
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from controlplane.cli import main
from controlplane.config import ControlPlaneConfig
from controlplane.db.migrate import upgrade_database_blocking
from tests.controlplane.accounts_support import PASSWORD
from tests.controlplane.conftest import start_client


def _config_file(tmp_path: Path) -> Path:
    path = tmp_path / "config.hcl"
    path.write_text(f'controlplane {{\n  data_dir = "{tmp_path / "data"}"\n}}\n')
    return path


def test_user_create_makes_an_admin_who_can_log_in(tmp_path: Path) -> None:
    config = _config_file(tmp_path)
    args = ["user", "create", "--config", str(config), "--admin", "--username", "root",
            "--email", "root@example.com", "--password", PASSWORD]  # fmt: skip
    assert main(args) == 0
    assert main(args) == 1  # taken

    async def login() -> dict[str, object]:
        client = await start_client(ControlPlaneConfig(data_dir=tmp_path / "data", port=0))
        try:
            response = await client.post(
                "/v1/auth/login", json={"email": "root@example.com", "password": PASSWORD}
            )
            assert response.status == 200
            body: dict[str, object] = await response.json()
            return body
        finally:
            await client.close()

    body = asyncio.run(login())
    assert isinstance(body["user"], dict)
    assert body["user"]["is_admin"] is True


def test_user_create_reads_the_password_from_stdin_and_validates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _config_file(tmp_path)
    monkeypatch.setattr(sys, "stdin", io.StringIO("short\n"))
    code = main(["user", "create", "--config", str(config), "--username", "bob",
                 "--email", "bob@example.com"])  # fmt: skip
    assert code == 2
    assert "password" in capsys.readouterr().err
    monkeypatch.setattr(sys, "stdin", io.StringIO(PASSWORD + "\n"))
    assert main(["user", "create", "--config", str(config), "--username", "bob",
                 "--email", "bob@example.com"]) == 0  # fmt: skip


def test_controlplane_command_serves_and_stops_on_sigterm(tmp_path: Path) -> None:
    config = tmp_path / "config.hcl"
    config.write_text(
        f'controlplane {{\n  data_dir = "{tmp_path / "data"}"\n  listen_address = "127.0.0.1"\n'
        "  port = 0\n}\n"
    )
    env = {**os.environ, "JWT_SECRET": "cli-test-secret-0123456789"}
    process = subprocess.Popen(
        [sys.executable, "-m", "controlplane.cli", "controlplane", "--config", str(config)],
        stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    assert process.stderr is not None
    with process.stderr:
        try:
            for line in process.stderr:
                if "control_plane_listening" in line:
                    assert re.search(r"127\.0\.0\.1:\d+", line)
                    break
            process.terminate()
            rest = process.stderr.read()
            assert process.wait(timeout=20) == 0, rest
            assert "control_plane_stopping" in rest
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()


def test_bad_config_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "config.hcl"
    config.write_text("controlplane {\n  prot = 1\n}\n")
    with pytest.raises(SystemExit) as exit_info:
        main(["controlplane", "--config", str(config)])
    assert exit_info.value.code == 2
    assert "unknown key 'prot'" in capsys.readouterr().err


def test_controlplane_command_exits_3_on_a_newer_schema(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    url = f"sqlite+aiosqlite:///{data / 'encedeus.db'}"
    upgrade_database_blocking(url)
    with sqlite3.connect(data / "encedeus.db") as db:
        db.execute("UPDATE alembic_version SET version_num = '9999_future'")
    config = tmp_path / "config.hcl"
    config.write_text(f'controlplane {{\n  data_dir = "{data}"\n  port = 0\n}}\n')
    result = subprocess.run(
        [sys.executable, "-m", "controlplane.cli", "controlplane", "--config", str(config)],
        capture_output=True, text=True, timeout=60,
        env={**os.environ, "JWT_SECRET": "cli-test-secret-0123456789"},
    )  # fmt: skip
    assert result.returncode == 3, result.stderr
    assert "9999_future" in result.stderr
