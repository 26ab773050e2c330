"""What a newcomer walking the README hits: errors that say what to do next."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from agent.daemon import RunningAgent
from tests.conftest import TEST_IMAGE
from tests.controlplane.accounts_support import Account, create_api_key, expect_json, register
from tests.controlplane.cluster_support import FAST, enrolled_agent, eventually
from tests.controlplane.conftest import ConfigFactory, start_client
from tests.controlplane.test_cli_client import credentials, encedeus, url_of
from tests.controlplane.test_deployments import cluster

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
README = Path(__file__).parents[2] / "README.md"
EGG_PAPER = Path(__file__).parent / "templates" / "eggs" / "egg-paper.json"
__all__ = ["cluster", "credentials"]  # fixtures shared with other tests


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


@pytest.fixture
async def open_cluster(
    make_config: ConfigFactory, tmp_path: Path
) -> AsyncIterator[tuple[TestClient[Any, Any], Account, RunningAgent]]:
    """`cluster` whose operator lets deployments name loopback registries."""
    client = await start_client(make_config(**FAST, image_registries_allow_private=True))
    try:
        admin = await register(client)
        async with enrolled_agent(client, admin, tmp_path / "agent", "node-a") as agent:
            yield client, admin, agent
    finally:
        await client.close()


@pytest.mark.docker
async def test_deploy_prints_a_pull_error_while_it_waits_and_points_at_status(
    open_cluster: tuple[TestClient[Any, Any], Account, RunningAgent],
    credentials: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    client, admin, _ = open_cluster

    async def node_ready() -> bool:
        nodes = await expect_json(await client.get("/v1/nodes", headers=admin.headers))
        return any(n["status"] == "ready" and n["host_stats"] for n in nodes["nodes"])

    await eventually(node_ready)
    key = await create_api_key(client, admin)
    assert await encedeus("login", "--url", url_of(client), "--api-key", key) == 0
    capsys.readouterr()
    # A registry nobody listens at: every pull fails, and is retried.
    code = await encedeus("deploy", "127.0.0.1:9/absent:v1", "--pull-policy", "always",
                          "--name", "unpulled", "--timeout", "4")  # fmt: skip
    assert code == 1
    printed = capsys.readouterr()
    assert "waiting: " in printed.out
    assert "retrying (Ctrl-C to stop waiting; the deployment stays)" in printed.out
    assert "not running after 4s (see `encedeus status unpulled`)" in printed.err


async def test_a_final_error_ends_the_wait_at_once(
    fast_api: TestClient[Any, Any], credentials: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    await _logged_in(fast_api)  # no node: the deployment fails
    capsys.readouterr()
    assert await encedeus("deploy", TEST_IMAGE, "--name", "nowhere", "--timeout", "30") == 1
    assert capsys.readouterr().err == (
        "error: the deployment failed: no node can take a replica now\n"
    )


async def test_errors_name_the_app_and_say_what_to_do(
    api: TestClient[Any, Any], credentials: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    await _logged_in(api)
    assert await encedeus("deploy", TEST_IMAGE, "--name", "web", "--replicas", "0", "-d") == 0
    capsys.readouterr()
    assert await encedeus("deploy", TEST_IMAGE, "--name", "web", "--replicas", "0", "-d") == 1
    assert "an app named 'web' exists: choose another with --name" in capsys.readouterr().err
    assert await encedeus("deploy", "--template", "sh-gmae", "-d") == 1
    assert "see `encedeus templates ls`" in capsys.readouterr().err


async def test_stop_says_how_long_and_rm_says_what_happened_to_the_data(
    api: TestClient[Any, Any], credentials: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    await _logged_in(api)
    for name in ("kept", "gone"):
        assert await encedeus("deploy", TEST_IMAGE, "--name", name, "--replicas", "0", "-d") == 0
    capsys.readouterr()
    assert await encedeus("stop", "kept", "--timeout", "5") == 0
    assert capsys.readouterr().out == "stopping (up to 10s)…\nStopped.\n"
    assert await encedeus("rm", "kept") == 0
    assert "data was kept" in capsys.readouterr().out
    assert await encedeus("rm", "--delete-data", "gone") == 0
    assert "Its data was deleted." in capsys.readouterr().out


async def test_login_without_a_terminal_or_a_password_says_how_to_give_one(
    api: TestClient[Any, Any],
    credentials: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    account = await register(api)
    monkeypatch.delenv("ENCEDEUS_PASSWORD", raising=False)
    with open(os.devnull) as devnull:
        monkeypatch.setattr(sys, "stdin", devnull)
        assert await encedeus("login", "--url", url_of(api), account.username) == 1
        assert capsys.readouterr().err == (
            "error: no password given: use --password-stdin or ENCEDEUS_PASSWORD\n"
        )
        assert await encedeus("login", "--url", url_of(api), account.username,
                              "--password-stdin") == 1  # fmt: skip
        assert "no password given" in capsys.readouterr().err


async def test_only_apps_with_a_web_port_have_a_url_in_ls_status_and_the_api(
    make_config: ConfigFactory, credentials: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    api = await start_client(make_config(domain_suffix="localhost", ingress_tls="off"))
    try:
        await _logged_in(api)
        assert await encedeus("deploy", TEST_IMAGE, "--name", "web", "--port", "8080",
                              "--replicas", "0", "-d") == 0  # fmt: skip
        assert await encedeus("deploy", TEST_IMAGE, "--name", "worker",
                              "--replicas", "0", "-d") == 0  # fmt: skip
        capsys.readouterr()
        assert await encedeus("ls") == 0
        rows = {line.split()[1]: line for line in capsys.readouterr().out.splitlines()[1:]}
        assert "http://web.localhost" in rows["web"]
        assert "localhost" not in rows["worker"]
        assert await encedeus("status", "worker") == 0
        assert "url:" not in capsys.readouterr().out
        assert await encedeus("status", "web") == 0
        assert "url: http://web.localhost" in capsys.readouterr().out
    finally:
        await api.close()
