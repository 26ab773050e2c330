"""One control plane server per embedded SQLite database; one-shot commands still work."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.controlplane.accounts_support import PASSWORD

COMMAND = [sys.executable, "-m", "controlplane.cli"]


def test_a_second_server_on_the_same_sqlite_file_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "config.hcl"
    config.write_text(
        f'controlplane {{\n  data_dir = "{tmp_path / "data"}"\n  listen_address = "127.0.0.1"\n'
        "  port = 0\n}\n"
    )
    env = {**os.environ, "JWT_SECRET": "cli-test-secret-0123456789"}
    env.pop("DATABASE_URL", None)
    first = subprocess.Popen(
        [*COMMAND, "controlplane", "--config", str(config)],
        stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    assert first.stderr is not None
    try:
        for line in first.stderr:
            if "control_plane_listening" in line:
                break
        second = subprocess.run(
            [*COMMAND, "controlplane", "--config", str(config)],
            capture_output=True, text=True, env=env, timeout=60, check=False,
        )  # fmt: skip
        assert second.returncode == 2, second.stderr
        assert "another control plane is already serving the SQLite database" in second.stderr
        created = subprocess.run(
            [*COMMAND, "user", "create", "--config", str(config), "--username", "ops",
             "--email", "ops@example.com", "--password", PASSWORD],
            capture_output=True, text=True, env=env, timeout=60, check=False,
        )  # fmt: skip
        assert created.returncode == 0, created.stderr
    finally:
        first.terminate()
        first.wait(timeout=30)
        first.stderr.close()
