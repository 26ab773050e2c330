"""HttpControlPlane.sftp_auth against the fake control plane over real HTTP."""

from __future__ import annotations

import pytest
from aiohttp import web

from agent.controlplane_client import ControlPlaneError, HttpControlPlane, parse_sftp_grant
from tests.agent.sftp.controlplane_fake import NODE_SECRET, Account, FakeControlPlane, Server, serve
from tests.local_http import serve_app

SERVER = "0123abcd-0000-4000-8000-000000000000"


@pytest.fixture
def fake() -> FakeControlPlane:
    return FakeControlPlane(
        accounts={"ann": Account("u-ann", "pw-of-ann", keys=["ssh-ed25519 AAAAkey"])},
        servers={SERVER: Server(owner="ann", disk_limit_bytes=1024)},
    )


async def test_grant_for_password_and_key(fake: FakeControlPlane) -> None:
    async with serve(fake):
        client = HttpControlPlane(fake.url, NODE_SECRET)
        try:
            grant = await client.sftp_auth(
                "ann.0123abcd", client_address="127.0.0.9", password="pw-of-ann"
            )
            assert grant.server_id == SERVER
            assert grant.user_id == "u-ann"
            assert grant.can_write
            assert grant.disk_limit_bytes == 1024
            grant = await client.sftp_auth(
                "ann.0123abcd", client_address="127.0.0.9", public_key="ssh-ed25519 AAAAkey c"
            )
            assert grant.can_read
        finally:
            await client.close()
    assert fake.requests[0] == {
        "username": "ann.0123abcd",
        "client_address": "127.0.0.9",
        "revalidate": False,
        "password": "pw-of-ann",
    }


@pytest.mark.parametrize(
    ("username", "password", "secret", "status", "code"),
    [
        ("ann.0123abcd", "wrong", NODE_SECRET, 401, "invalid_credentials"),
        ("ann.ffffffff", "pw-of-ann", NODE_SECRET, 404, "server_not_found"),
        ("ann.0123abcd", "pw-of-ann", "not-the-secret", 401, "invalid_node_secret"),
    ],
)
async def test_refusals_are_definitive(
    fake: FakeControlPlane, username: str, password: str, secret: str, status: int, code: str
) -> None:
    async with serve(fake):
        client = HttpControlPlane(fake.url, secret)
        try:
            with pytest.raises(ControlPlaneError) as caught:
                await client.sftp_auth(username, client_address="::1", password=password)
        finally:
            await client.close()
    assert (caught.value.status, caught.value.code) == (status, code)
    assert caught.value.definitive


async def test_outages_are_not_definitive(fake: FakeControlPlane) -> None:
    fake.down = True
    async with serve(fake):
        client = HttpControlPlane(fake.url, NODE_SECRET)
        try:
            with pytest.raises(ControlPlaneError) as caught:
                await client.sftp_auth("ann.0123abcd", client_address="::1", password="x")
        finally:
            await client.close()
    assert caught.value.status == 503
    assert not caught.value.definitive
    client = HttpControlPlane(fake.url, NODE_SECRET, timeout=2)  # nothing listens now
    try:
        with pytest.raises(ControlPlaneError) as caught:
            await client.sftp_auth("ann.0123abcd", client_address="::1", password="x")
    finally:
        await client.close()
    assert caught.value.status == 0
    assert not caught.value.definitive


async def _bad_gateway(_: web.Request) -> web.Response:
    return web.Response(status=502, text="<html>bad gateway</html>")


async def test_non_json_error_page() -> None:
    app = web.Application()
    app.router.add_post("/v1/remote/sftp/auth", _bad_gateway)
    async with serve_app(app) as url:
        client = HttpControlPlane(url, NODE_SECRET)
        try:
            with pytest.raises(ControlPlaneError) as caught:
                await client.sftp_auth("ann.0123abcd", client_address="::1", password="x")
        finally:
            await client.close()
    assert caught.value.status == 502


@pytest.mark.parametrize(
    "answer",
    [
        {},
        {"server_id": "", "user_id": "u"},
        {"server_id": "s" * 8, "user_id": "u", "permissions": "file.read"},
        {"server_id": "s" * 8, "user_id": "u", "disk_limit_bytes": -1},
        {"server_id": "s" * 8, "user_id": "u", "read_only": "yes"},
    ],
)
def test_malformed_grants_are_refused(answer: dict[str, object]) -> None:
    with pytest.raises(ControlPlaneError):
        parse_sftp_grant(answer)
