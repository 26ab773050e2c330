"""`on_node_loss` and `move_after` through the API, on SQLite and PostgreSQL: the
defaults (wait for template servers, move for the rest), durations, and the clear
errors for what does not go together."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.conftest import TEST_IMAGE
from tests.controlplane.accounts_support import Account, error_code, expect_json, register


async def _create(api: TestClient[Any, Any], user: Account, **fields: Any) -> Any:
    body = {"app_name": "n", "image": TEST_IMAGE, "replicas": 0, **fields}
    created = await expect_json(
        await api.post("/v1/deployments", json=body, headers=user.headers), 201
    )
    return await expect_json(
        await api.get(f"/v1/deployments/{created['id']}", headers=user.headers)
    )


async def test_template_servers_wait_and_the_others_move_by_default(
    api: TestClient[Any, Any],
) -> None:
    user = await register(api)
    plain = await _create(api, user, app_name="plain")
    assert (plain["on_node_loss"], plain["move_after_seconds"]) == ("move", None)
    body = {"app_name": "game", "template": "sh-game", "replicas": 0}
    made = await expect_json(
        await api.post("/v1/deployments", json=body, headers=user.headers), 201
    )
    game = await expect_json(await api.get(f"/v1/deployments/{made['id']}", headers=user.headers))
    assert (game["on_node_loss"], game["move_after_seconds"]) == ("wait", None)


async def test_move_after_takes_durations_and_goes_with_wait(api: TestClient[Any, Any]) -> None:
    user = await register(api)
    waits = await _create(api, user, on_node_loss="wait", move_after="10m")
    assert (waits["on_node_loss"], waits["move_after_seconds"]) == ("wait", 600)
    path = f"/v1/deployments/{waits['id']}"
    changed = await api.put(path, json={"move_after": 90}, headers=user.headers)
    assert changed.status == 200
    assert (await expect_json(await api.get(path, headers=user.headers)))[
        "move_after_seconds"
    ] == 90
    await api.put(path, json={"move_after": "0s"}, headers=user.headers)  # 0: wait forever
    assert (await expect_json(await api.get(path, headers=user.headers)))[
        "move_after_seconds"
    ] is None
    await api.put(path, json={"on_node_loss": "move"}, headers=user.headers)
    moved = await expect_json(await api.get(path, headers=user.headers))
    assert (moved["on_node_loss"], moved["move_after_seconds"]) == ("move", None)
    refused = await api.put(path, json={"move_after": "5m"}, headers=user.headers)
    assert refused.status == 422
    assert await error_code(refused) == "move_after_needs_wait"
    assert (await expect_json(await api.get(path, headers=user.headers)))["on_node_loss"] == "move"


@pytest.mark.parametrize(
    "fields",
    [
        {"on_node_loss": "later"},
        {"on_node_loss": "wait", "move_after": "10 minutes"},
        {"on_node_loss": "wait", "move_after": "-5m"},
        {"on_node_loss": "wait", "move_after": -1},
        {"on_node_loss": "wait", "move_after": "31d"},
        {"on_node_loss": "wait", "move_after": True},
        {"on_node_loss": "wait", "move_after": "\uff15m"},  # a full-width digit
        {"on_node_loss": "move", "move_after": "5m"},
    ],
)
async def test_bad_node_loss_settings_are_refused(
    api: TestClient[Any, Any], fields: dict[str, Any]
) -> None:
    user = await register(api)
    body = {"app_name": "bad", "image": TEST_IMAGE, "replicas": 0, **fields}
    refused = await api.post("/v1/deployments", json=body, headers=user.headers)
    assert refused.status in (400, 422), await refused.text()
    answer = await refused.json()
    assert set(answer["error"]) >= {"code", "message"}
    listed = await expect_json(await api.get("/v1/deployments", headers=user.headers))
    assert listed["deployments"] == []


async def test_move_after_without_a_policy_needs_a_waiting_deployment(
    api: TestClient[Any, Any],
) -> None:
    user = await register(api)
    body = {"app_name": "m", "image": TEST_IMAGE, "replicas": 0, "move_after": "5m"}
    refused = await api.post("/v1/deployments", json=body, headers=user.headers)
    assert refused.status == 422
    assert await error_code(refused) == "move_after_needs_wait"


async def test_moving_a_slot_that_is_not_there_is_a_clear_error(api: TestClient[Any, Any]) -> None:
    user, other = await register(api), await register(api)
    made = await _create(api, user, app_name="empty")  # no replicas
    path = f"/v1/deployments/{made['id']}/replicas"
    for ordinal, status, code in [
        ("0", 404, "replica_not_found"),
        ("x", 404, "replica_not_found"),
    ]:
        answer = await api.post(f"{path}/{ordinal}/move", json={}, headers=user.headers)
        assert answer.status == status
        assert await error_code(answer) == code
    foreign = await api.post(f"{path}/0/move", json={}, headers=other.headers)
    assert foreign.status == 404
    assert await error_code(foreign) == "deployment_not_found"
    bad = await api.post(f"{path}/0/move", json={"node_id": "nope"}, headers=user.headers)
    assert bad.status == 400
    assert await error_code(bad) == "validation_error"
