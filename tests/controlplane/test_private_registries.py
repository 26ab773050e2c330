"""Images from registries at private or local addresses are refused at the API (403
image_not_allowed naming the rule) unless the operator opens them, so a tenant cannot
make a node's engine connect to the node's own services, private networks or cloud
metadata. On SQLite and PostgreSQL; no registry is contacted (replicas: 0)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.controlplane.accounts_support import expect_json, register
from tests.controlplane.conftest import ConfigFactory, start_client

PRIVATE = [
    "127.0.0.1:8081/x/y:1",
    "localhost:2375/x:1",
    "localhost/x:1",
    "169.254.169.254:80/latest/meta-data:1",
    "10.0.0.5:5000/team/app:2",
    "192.168.1.1/a:1",
    "100.64.0.1:5000/a:1",
    "[::1]:5000/a:1",
    "[fe80::1]:5000/a:1",
    "[fd00::5]:5000/a:1",
    "2130706433:5000/a:1",
    "0x7f.1:5000/a:1",
    "0.0.0.0:5000/a:1",
]


async def _create(client: Any, headers: dict[str, str], name: str, image: str) -> Any:
    body = {"app_name": name, "image": image, "replicas": 0}
    return await client.post("/v1/deployments", json=body, headers=headers)


async def test_private_and_local_registries_are_refused_naming_the_rule(
    make_config: ConfigFactory,
) -> None:
    client = await start_client(make_config())
    try:
        user = await register(client)
        for n, image in enumerate(PRIVATE):
            body = await expect_json(await _create(client, user.headers, f"p{n}", image), 403)
            assert body["error"]["code"] == "image_not_allowed", image
            assert "image_registries_allow_private" in body["error"]["message"], body
        for n, image in enumerate(["ghcr.io/x/y:1", "nginx", "8.8.8.8:5000/public:1"]):
            await expect_json(await _create(client, user.headers, f"ok{n}", image), 201)
    finally:
        await client.close()


@pytest.mark.parametrize(
    "opening",
    [{"image_allowlist": ["10.0.0.5:5000"]}, {"image_registries_allow_private": True}],
)
async def test_the_operator_opens_private_registries(
    make_config: ConfigFactory, opening: dict[str, Any]
) -> None:
    client = await start_client(make_config(**opening))
    try:
        user = await register(client)
        await expect_json(await _create(client, user.headers, "lab", "10.0.0.5:5000/a:1"), 201)
    finally:
        await client.close()
