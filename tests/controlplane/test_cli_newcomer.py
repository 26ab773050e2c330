"""What a newcomer walking the README hits: errors that say what to do next."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.controlplane.accounts_support import create_api_key, register
from tests.controlplane.test_cli_client import credentials, encedeus, url_of

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
README = Path(__file__).parents[2] / "README.md"
EGG_PAPER = Path(__file__).parent / "templates" / "eggs" / "egg-paper.json"
__all__ = ["credentials"]  # the fixture, shared with test_cli_client


async def _logged_in(api: TestClient[Any, Any]) -> None:
    account = await register(api)
    key = await create_api_key(api, account)
    assert await encedeus("login", "--url", url_of(api), "--api-key", key) == 0


async def test_templates_import_of_a_missing_file_or_a_bundled_id_says_what_to_do(
    api: TestClient[Any, Any], credentials: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    await _logged_in(api)
    capsys.readouterr()
    assert await encedeus("templates", "import", "no-such-egg.json") == 1
    assert "error: cannot read no-such-egg.json: No such file" in capsys.readouterr().err
    assert await encedeus("templates", "import", str(EGG_PAPER)) == 1
    assert "--id" in capsys.readouterr().err
    # The README's example, with the path it names.
    example = re.search(r"encedeus templates import --id \S+ (\S+)", README.read_text())
    assert example is not None
    assert (README.parent / example[1]).resolve() == EGG_PAPER.resolve()
    assert await encedeus("templates", "import", "--id", "my-paper", str(EGG_PAPER)) == 0
    assert "Template my-paper version" in capsys.readouterr().out
