"""Bad input that used to reach the database or the agents: refused with 400 in the
error envelope, and nothing stored. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.controlplane.accounts_support import error_code, register

Client = TestClient[Any, Any]
pytestmark = pytest.mark.usefixtures("blocking_guard")
BASE = {"app_name": "web", "image": "encedeus/busybox:latest"}


@pytest.mark.parametrize(
    "change",
    [
        {"ports": [0]},
        {"ports": [70000]},
        {"port": 70000},
        {"env_vars": {"": "x"}},
        {"env_vars": {"A=B": "x"}},
        {"resources": {"memory": "99999999999999999999999Ti"}},
        {"resources": {"cpu": "99999999999"}},
    ],
)
async def test_deployment_values_the_agent_would_refuse(
    api: Client, change: dict[str, Any]
) -> None:
    owner = await register(api)
    created = await api.post("/v1/deployments", json={**BASE, **change}, headers=owner.headers)
    assert created.status == 400, await created.text()
    assert await error_code(created) == "validation_error"
    listed = await (await api.get("/v1/deployments", headers=owner.headers)).json()
    assert listed["deployments"] == []


async def test_a_bad_update_changes_nothing(api: Client) -> None:
    owner = await register(api)
    created = await api.post(
        "/v1/deployments", json={**BASE, "ports": [8080]}, headers=owner.headers
    )
    assert created.status == 201, await created.text()
    path = f"/v1/deployments/{(await created.json())['id']}"
    for change in ({"ports": [0]}, {"image": "x", "env_vars": {"": "x"}}):
        refused = await api.put(path, json=change, headers=owner.headers)
        assert refused.status == 400, await refused.text()
    kept = await (await api.get(path, headers=owner.headers)).json()
    assert (kept["ports"], kept["image"], kept["generation"]) == ([8080], BASE["image"], 1)


async def test_nul_characters_never_cause_a_server_error(api: Client, database_url: str) -> None:
    owner = await register(api)
    answers = [
        await api.post("/v1/auth/login", json={"username": "a\x00b", "password": "whatever1"}),
        await api.post("/v1/auth/forgot-password", json={"email": "a\x00b@example.com"}),
        await api.post(
            "/v1/deployments", json={**BASE, "image": "busy\x00box"}, headers=owner.headers
        ),
        await api.post("/v1/api-keys", json={"name": "k\x00"}, headers=owner.headers),
    ]
    assert all(answer.status < 500 for answer in answers), [a.status for a in answers]
    if database_url.startswith("postgresql"):  # SQLite stores NUL; PostgreSQL cannot
        assert [answer.status for answer in answers] == [400] * len(answers)
        assert {await error_code(answer) for answer in answers} == {"validation_error"}
