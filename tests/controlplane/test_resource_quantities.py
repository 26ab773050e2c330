"""Every resource field of the API goes through common.quantities (issue 9, finding 3):
`"memory": "0.5"` used to give a task Memory=0, i.e. no limit at all. Quantities that
round below the minimum, exceed the maximum or are malformed are a 400 naming the
field, and nothing is stored; good ones are stored as what Docker will receive."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from tests.conftest import TEST_IMAGE
from tests.controlplane.accounts_support import Account, register

Client = TestClient[Any, Any]
pytestmark = pytest.mark.usefixtures("blocking_guard")
DEPLOYMENT = {"app_name": "web", "image": TEST_IMAGE}
REFUSED = [
    {"memory": "0.5"},
    {"memory": 0.5},
    {"memory": "1"},
    {"memory": "4Mi"},
    {"memory": "0"},
    {"memory": "-128Mi"},
    {"memory": "1e9"},
    {"memory": "１２８Mi"},  # noqa: RUF001 - full-width digits
    {"memory": "2048Ti"},
    {"cpu": "0.5m"},
    {"cpu": "0"},
    {"cpu": 0.001},
    {"cpu": "5000"},
    {"cpu": "1Gi"},
]


def _field_of(resources: dict[str, Any]) -> str:
    return "body.resources." + next(iter(resources))


async def _expect_refused(answer: aiohttp.ClientResponse, field: str) -> None:
    body = await answer.json()
    assert answer.status == 400, body
    assert body["error"]["code"] == "validation_error", body
    fields = [detail["field"] for detail in body["error"]["details"]]
    assert fields == [field], body


async def _post_task(api: Client, owner: Account, resources: dict[str, Any]) -> Any:
    spec = {"image": TEST_IMAGE, "command": "true", "resources": resources}
    return await api.post("/v1/tasks", json=spec, headers=owner.headers)


async def _post_task_form(api: Client, owner: Account, resources: dict[str, Any]) -> Any:
    form = aiohttp.FormData()
    spec = {"image": TEST_IMAGE, "resources": resources}
    form.add_field("task", json.dumps(spec), content_type="application/json")
    return await api.post("/v1/tasks", data=form, headers=owner.headers)


@pytest.mark.parametrize("resources", REFUSED, ids=lambda r: repr(r))
async def test_every_resource_field_refuses_bad_quantities(
    api: Client, resources: dict[str, Any]
) -> None:
    owner = await register(api)
    field = _field_of(resources)
    await _expect_refused(await _post_task(api, owner, resources), field)
    await _expect_refused(await _post_task_form(api, owner, resources), field)
    await _expect_refused(
        await api.post(
            "/v1/deployments", json={**DEPLOYMENT, "resources": resources}, headers=owner.headers
        ),
        field,
    )
    kept = await api.post("/v1/deployments", json=DEPLOYMENT, headers=owner.headers)
    path = f"/v1/deployments/{(await kept.json())['id']}"
    await _expect_refused(
        await api.put(path, json={"resources": resources}, headers=owner.headers), field
    )
    tasks = await (await api.get("/v1/tasks", headers=owner.headers)).json()
    assert tasks["tasks"] == []
    details = await (await api.get(path, headers=owner.headers)).json()
    assert details["generation"] == 1


async def test_a_task_never_runs_without_a_memory_limit(api: Client) -> None:
    """The finding itself: memory "0.5" is refused; the smallest accepted memory is a
    real limit of 6 MiB, rounded up, never 0."""
    owner = await register(api)
    refused = await _post_task(api, owner, {"memory": "0.5"})
    assert refused.status == 400
    message = (await refused.json())["error"]["details"][0]["message"]
    assert "memory '0.5' is less than the minimum of 6Mi" in message
    smallest = await _post_task(api, owner, {"memory": "6291455.5", "cpu": "10.5m"})
    created = await smallest.json()
    assert smallest.status == 201, created
    assert created["resources"] == {"cpu_millis": 11, "memory_bytes": 6 * 2**20}


async def test_deployments_accept_the_smallest_quantities(api: Client) -> None:
    owner = await register(api)
    answer = await api.post(
        "/v1/deployments",
        json={**DEPLOYMENT, "resources": {"cpu": " 0.25 ", "memory": "6Mi"}},
        headers=owner.headers,
    )
    assert answer.status == 201, await answer.text()
