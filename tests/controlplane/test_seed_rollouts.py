"""Seed 004's webhook vocabulary (deployment_started / _completed / _failed) beside
our finer events: the mapping, and a real rollout on a real agent seen by a real
webhook receiver."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from controlplane.events.bus import Event, EventType
from controlplane.events.seed_rollouts import SeedRollouts
from controlplane.state import AGENT_POOL
from tests.conftest import TEST_IMAGE
from tests.controlplane.accounts_support import register
from tests.controlplane.cluster_support import FAST, enrolled_agent, eventually
from tests.controlplane.conftest import ConfigFactory, start_client
from tests.local_http import serve_app


def _status(status: str, deployment: str = "d1") -> Event:
    return Event(EventType.DEPLOYMENT_STATUS_CHANGED, owner_id="u1", deployment_id=deployment,
                 data={"status": status, "app_name": "web"})  # fmt: skip


def test_each_rollout_is_announced_once_in_seed_terms() -> None:
    rollouts = SeedRollouts("apps.example.com")
    created = Event(EventType.DEPLOYMENT_CREATED, owner_id="u1", deployment_id="d1",
                    data={"status": "pending", "app_name": "web"})  # fmt: skip
    sequence = [
        (created, "deployment_started"),
        (_status("pending"), None),  # the same phase again (e.g. a new error message)
        (_status("running"), "deployment_completed"),
        (_status("running"), None),
        (_status("updating"), "deployment_started"),
        (_status("failed"), "deployment_failed"),
        (_status("stopped"), None),
        (_status("pending"), "deployment_started"),
        (_status("running"), "deployment_completed"),
    ]
    for event, expected in sequence:
        derived = rollouts.derive(event)
        assert [d.type_name for d in derived] == ([expected] if expected else []), event
    (started,) = rollouts.derive(_status("pending", deployment="d2"))
    assert started.data == {"status": "started", "app_name": "web",
                            "url": "https://web.apps.example.com"}  # fmt: skip
    assert (started.owner_id, started.deployment_id) == ("u1", "d2")
    rollouts.derive(Event(EventType.DEPLOYMENT_DELETED, owner_id="u1", deployment_id="d1"))
    assert [d.type_name for d in rollouts.derive(_status("running"))] == ["deployment_completed"]
    assert rollouts.derive(Event(EventType.TASK_STARTED, owner_id="u1", task_id="t")) == []
    (no_url,) = SeedRollouts("").derive(created)
    assert no_url.data["url"] is None


@pytest.fixture
async def received() -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    payloads: list[dict[str, Any]] = []

    async def hook(request: web.Request) -> web.Response:
        payloads.append(json.loads(await request.read()))
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    async with serve_app(app) as url:
        yield f"{url}/hook", payloads


@pytest.mark.docker
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_real_rollout_reaches_webhooks_in_both_vocabularies(
    make_config: ConfigFactory, received: tuple[str, list[dict[str, Any]]], tmp_path: Path
) -> None:
    url, payloads = received
    config = make_config(**FAST, webhook_url=url, domain_suffix="apps.example.com")
    client: TestClient[Any, Any] = await start_client(config)
    try:
        admin = await register(client)
        async with enrolled_agent(client, admin, tmp_path / "agent", "node-a") as agent:

            async def node_ready() -> bool:
                return bool(client.app[AGENT_POOL].state(agent.identity.node_id) == "ready")

            # Before the node is ready the deployment would fail (unschedulable) and
            # start again: a true sequence, but not the single rollout checked here.
            await eventually(node_ready, timeout=30)
            body = {"app_name": "web", "image": TEST_IMAGE, "command": "sleep 600"}
            created = await client.post("/v1/deployments", json=body, headers=admin.headers)
            deployment = (await created.json())["id"]

            def types() -> list[str]:
                return [p["type"] for p in payloads if p.get("deployment_id") == deployment]

            async def completed() -> bool:
                return "deployment_completed" in types()

            await eventually(completed, timeout=30)
    finally:
        await client.close()
    seen = types()
    assert seen.index("deployment_created") >= 0
    assert seen.count("deployment_started") == 1
    assert seen.index("deployment_started") < seen.index("deployment_completed")
    assert "deployment_status_changed" in seen  # our finer events are still there
    done = next(p for p in payloads if p["type"] == "deployment_completed")
    assert {k: done[k] for k in ("deployment_id", "status", "app_name", "url", "user_id")} == {
        "deployment_id": deployment, "status": "completed", "app_name": "web",
        "url": "https://web.apps.example.com", "user_id": admin.id,
    }  # fmt: skip
    assert done["timestamp"].endswith("Z")
