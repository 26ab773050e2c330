"""SSH public keys: parsed and fingerprinted, invalid ones refused, private per account."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path
from typing import Any

import asyncssh
import pytest
from aiohttp.test_utils import TestClient

from tests.controlplane.accounts_support import error_code, register

Client = TestClient[Any, Any]
pytestmark = pytest.mark.usefixtures("blocking_guard")


def _public_key(algorithm: str = "ssh-ed25519") -> str:
    key = asyncssh.generate_private_key(algorithm, comment="me@laptop")
    return key.export_public_key("openssh").decode()


@pytest.fixture
async def public_key() -> str:
    return await asyncio.to_thread(_public_key)


async def test_added_key_shows_the_fingerprint_ssh_keygen_computes(
    api: Client, public_key: str, tmp_path: Path
) -> None:
    account = await register(api)
    response = await api.post(
        "/v1/user/ssh-keys", json={"name": "laptop", "public_key": public_key},
        headers=account.headers,
    )  # fmt: skip
    assert response.status == 201
    body = await response.json()
    (tmp_path / "key.pub").write_text(public_key)
    keygen = await asyncio.to_thread(
        subprocess.run, ["ssh-keygen", "-lf", str(tmp_path / "key.pub")],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert body["fingerprint"] == keygen.stdout.split()[1]
    listing = await (await api.get("/v1/user/ssh-keys", headers=account.headers)).json()
    assert [key["fingerprint"] for key in listing["ssh_keys"]] == [body["fingerprint"]]


async def test_invalid_keys_are_refused(api: Client) -> None:
    account = await register(api)
    for text in ("ssh-ed25519 AAAAnotbase64!!", "hello", "ssh-rsa AAAAB3NzaC1yc2E"):
        response = await api.post(
            "/v1/user/ssh-keys", json={"name": "x", "public_key": text}, headers=account.headers
        )
        assert response.status == 422, text
        assert await error_code(response) == "invalid_ssh_key"


async def test_private_keys_are_not_accepted_as_public_keys(api: Client) -> None:
    account = await register(api)
    private = asyncssh.generate_private_key("ssh-ed25519").export_private_key().decode()
    response = await api.post(
        "/v1/user/ssh-keys", json={"name": "x", "public_key": private}, headers=account.headers
    )
    assert response.status == 422


async def test_duplicate_key_is_a_conflict(api: Client, public_key: str) -> None:
    account = await register(api)
    body = {"name": "a", "public_key": public_key}
    assert (await api.post("/v1/user/ssh-keys", json=body, headers=account.headers)).status == 201
    again = await api.post("/v1/user/ssh-keys", json=body, headers=account.headers)
    assert again.status == 409
    assert await error_code(again) == "ssh_key_exists"


async def test_keys_are_private_to_their_account(api: Client, public_key: str) -> None:
    alice = await register(api)
    bob = await register(api)
    created = await (
        await api.post(
            "/v1/user/ssh-keys", json={"name": "a", "public_key": public_key},
            headers=alice.headers,
        )
    ).json()  # fmt: skip
    bobs = await (await api.get("/v1/user/ssh-keys", headers=bob.headers)).json()
    assert bobs["ssh_keys"] == []
    steal = await api.delete(f"/v1/user/ssh-keys/{created['id']}", headers=bob.headers)
    assert steal.status == 404
    mine = await api.delete(f"/v1/user/ssh-keys/{created['id']}", headers=alice.headers)
    assert mine.status == 200
    assert (await (await api.get("/v1/user/ssh-keys", headers=alice.headers)).json())[
        "ssh_keys"
    ] == []
