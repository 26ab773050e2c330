"""`encedeus templates ls | show | import` and `deploy --template`, over HTTP only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.controlplane.accounts_support import create_api_key, expect_json, register
from tests.controlplane.test_cli_client import encedeus, url_of

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
EGGS = Path(__file__).parent / "templates" / "eggs"


@pytest.fixture
def credentials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "config" / "credentials"
    monkeypatch.setenv("ENCEDEUS_CREDENTIALS", str(path))
    monkeypatch.delenv("ENCEDEUS_URL", raising=False)
    monkeypatch.delenv("ENCEDEUS_TOKEN", raising=False)
    return path


async def test_templates_commands_and_deploy_from_a_template(
    api: TestClient[Any, Any],
    credentials: Path,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    admin = await register(api)
    key = await create_api_key(api, admin)
    assert await encedeus("login", "--url", url_of(api), "--api-key", key) == 0
    capsys.readouterr()
    assert await encedeus("templates", "ls") == 0
    assert "sh-game" in capsys.readouterr().out
    assert await encedeus("templates", "show", "sh-game") == 0
    hcl = capsys.readouterr().out
    assert 'id = "sh-game"' in hcl
    copy = tmp_path / "copy.hcl"
    copy.write_text(hcl.replace('id = "sh-game"', 'id = "my-game"'))
    assert await encedeus("templates", "import", str(copy)) == 0
    assert "Template my-game version 1 imported" in capsys.readouterr().out
    assert await encedeus("templates", "import", str(EGGS / "egg-valheim.yaml"), "--id", "vh") == 0
    printed = capsys.readouterr().out
    assert "Template vh version" in printed
    assert "not converted: startup_commands" in printed
    assert await encedeus("templates", "import", str(copy)) == 1
    assert "exists" in capsys.readouterr().err
    assert await encedeus("deploy", "--template", "my-game", "--var", "MAX_PLAYERS=99",
                          "--replicas", "0", "-d") == 1  # fmt: skip
    assert "MAX_PLAYERS must be at most 64" in capsys.readouterr().err
    assert await encedeus("deploy", "--template", "my-game", "--var", "MAX_PLAYERS=3",
                          "--name", "game", "--replicas", "0", "-d") == 0  # fmt: skip
    listed = await expect_json(await api.get("/v1/deployments", headers=admin.headers))
    [deployment] = listed["deployments"]
    details = await expect_json(
        await api.get(f"/v1/deployments/{deployment['id']}", headers=admin.headers)
    )
    assert details["template"]["variables"]["MAX_PLAYERS"] == "3"
    assert await encedeus("deploy") == 1
    assert "give an image or --template" in capsys.readouterr().err
