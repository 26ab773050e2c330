"""Exec through the control plane: the token handed to the owner or an admin only,
the session recorded, the agent's report of its end; with a real agent and dockerd."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from agent.daemon import RunningAgent
from controlplane.db.tables import Deployment, ExecSession, Node, User
from controlplane.state import DATABASE
from tests.conftest import TEST_IMAGE
from tests.controlplane.accounts_support import Account, error_code, expect_json, register
from tests.controlplane.cluster_support import FAST, enrolled_agent, eventually
from tests.controlplane.conftest import SQLITE_ONLY, ConfigFactory, start_client

SLEEPER = "trap 'exit 0' TERM; while true; do sleep 1; done"


@pytest.fixture
async def cluster(
    make_config: ConfigFactory, tmp_path: Path
) -> AsyncIterator[tuple[TestClient[Any, Any], Account, RunningAgent]]:
    client = await start_client(make_config(**FAST))
    try:
        admin = await register(client)
        async with enrolled_agent(client, admin, tmp_path / "agent", "node-x") as agent:
            yield client, admin, agent
    finally:
        await client.close()


async def run_exec(access: dict[str, Any], typed: str = "") -> tuple[str, int]:
    """Connect to the agent as a browser would; the output and the exit code."""
    screen = ""
    async with aiohttp.ClientSession() as http, http.ws_connect(access["url"]) as ws:
        await ws.send_json({"auth_token": access["token"]})
        if typed:
            await ws.send_json({"stdin": {"data": base64.b64encode(typed.encode()).decode()}})
        async for message in ws:
            frame = json.loads(message.data)
            if "stdout" in frame:
                screen += base64.b64decode(frame["stdout"]["data"]).decode()
            if frame.get("exited"):
                return screen, int(frame["result"]["exit_code"])
    raise AssertionError(f"no exited frame; got {screen!r}")


async def running_deployment(client: TestClient[Any, Any], owner: Account) -> str:
    body = {"app_name": "box", "image": TEST_IMAGE, "command": SLEEPER, "stop_timeout": 2}
    created = await expect_json(
        await client.post("/v1/deployments", json=body, headers=owner.headers), 201
    )
    dep: str = created["id"]

    async def ready() -> bool:
        status = await expect_json(
            await client.get(f"/v1/deployments/{dep}/status", headers=owner.headers)
        )
        return bool(status["replicas"]["ready"] == 1)

    await eventually(ready, timeout=30)
    return dep


@pytest.mark.docker
@SQLITE_ONLY
async def test_exec_is_recorded_with_its_exit_code(
    cluster: tuple[TestClient[Any, Any], Account, RunningAgent],
) -> None:
    client, admin, _agent = cluster
    owner, stranger = await register(client), await register(client)
    dep = await running_deployment(client, owner)
    command = json.dumps(["sh", "-c", "read x; echo got $x; exit 5"])
    access = await expect_json(
        await client.get(
            f"/v1/deployments/{dep}/replicas/0/exec",
            params={"command": command},
            headers=owner.headers,
        )
    )
    assert access["url"].endswith(f"/api/servers/{access['server_id']}/exec")
    assert await run_exec(access, "hi\n") == ("hi\r\ngot hi\r\n", 5)

    async def ended() -> Any:
        listed = await expect_json(
            await client.get(f"/v1/deployments/{dep}/exec-sessions", headers=owner.headers)
        )
        return listed if listed["exec_sessions"][0]["ended_at"] else None

    listed = await eventually(ended)
    (record,) = listed["exec_sessions"]
    assert record["id"] == access["session_id"]
    assert (record["username"], record["user_id"]) == (owner.username, owner.id)
    assert record["command"] == ["sh", "-c", "read x; echo got $x; exit 5"]
    assert (record["exit_code"], record["end_reason"]) == (5, "exited")
    assert record["started_at"] is not None
    assert listed["pagination"] == {"page": 1, "limit": 10, "total": 1, "total_pages": 1}

    for path in ("replicas/0/exec", "exec-sessions"):
        refused = await client.get(f"/v1/deployments/{dep}/{path}", headers=stranger.headers)
        assert refused.status == 404
        assert await error_code(refused) == "deployment_not_found"
    by_admin = await expect_json(
        await client.get(f"/v1/deployments/{dep}/replicas/0/exec", headers=admin.headers)
    )
    assert by_admin["command"] == ["/bin/sh"]
    assert (await run_exec(by_admin, "exit 4\n"))[1] == 4
    await leave_early(client, owner, dep)
    missing = await client.get(f"/v1/deployments/{dep}/replicas/7/exec", headers=owner.headers)
    assert await error_code(missing) == "replica_not_found"
    for bad in ("ls", "[]", '["ls", 3]', json.dumps(["x"] * 65)):
        response = await client.get(
            f"/v1/deployments/{dep}/replicas/0/exec", params={"command": bad},
            headers=owner.headers,
        )  # fmt: skip
        assert response.status == 400, bad
        assert await error_code(response) == "validation_error"


async def leave_early(client: TestClient[Any, Any], owner: Account, dep: str) -> None:
    """A client that leaves while its command runs: hung up, recorded as disconnected."""
    access = await expect_json(
        await client.get(
            f"/v1/deployments/{dep}/replicas/0/exec",
            params={"command": json.dumps(["sleep", "4242"])},
            headers=owner.headers,
        )
    )
    async with aiohttp.ClientSession() as http, http.ws_connect(access["url"]) as ws:
        await ws.send_json({"auth_token": access["token"]})

    async def recorded() -> Any:
        listed = await expect_json(
            await client.get(f"/v1/deployments/{dep}/exec-sessions", headers=owner.headers)
        )
        record = next(r for r in listed["exec_sessions"] if r["id"] == access["session_id"])
        return record if record["ended_at"] else None

    record = await eventually(recorded)
    assert (record["end_reason"], record["exit_code"]) == ("disconnected", 129)  # SIGHUP


async def recorded_session(client: TestClient[Any, Any], secret: str) -> tuple[str, str]:
    """A node with `secret`, a deployment and an exec session on it: (session, node) ids."""
    owner = await register(client)
    async with client.app[DATABASE].transaction() as session:
        node = Node(name=f"n-{uuid.uuid4().hex[:6]}", status="ready", secret=secret)
        user = await session.get(User, uuid.UUID(owner.id))
        assert user is not None
        deployment = Deployment(
            user_id=user.id, app_name=f"app-{uuid.uuid4().hex[:8]}", image=TEST_IMAGE
        )
        session.add_all([node, deployment])
        await session.flush()
        record = ExecSession(
            deployment_id=deployment.id, replica=0, server_id=uuid.uuid4(), node_id=node.id,
            user_id=user.id, username=user.username, command=["/bin/sh"],
        )  # fmt: skip
        session.add(record)
    return str(record.id), str(node.id)


async def test_an_end_is_recorded_once_and_only_from_its_node(
    make_config: ConfigFactory,
) -> None:
    client = await start_client(make_config())
    try:
        await register(client)  # the first account is the admin
        session_id, _ = await recorded_session(client, "secret-a" * 4)
        await recorded_session(client, "secret-b" * 4)
        end = f"/v1/remote/exec-sessions/{session_id}/end"
        body = {"started_at": 1_800_000_000.5, "exit_code": 0, "reason": "exited"}

        def as_node(secret: str) -> dict[str, str]:
            return {"Authorization": f"Bearer {secret}"}

        unknown = await client.post(end, json=body, headers=as_node("nobody" * 6))
        assert (unknown.status, await error_code(unknown)) == (401, "invalid_node_secret")
        other = await client.post(end, json=body, headers=as_node("secret-b" * 4))
        assert (other.status, await error_code(other)) == (404, "exec_session_not_found")
        bad = await client.post(end, json={**body, "reason": ""}, headers=as_node("secret-a" * 4))
        assert bad.status == 400
        await expect_json(await client.post(end, json=body, headers=as_node("secret-a" * 4)))
        again = await client.post(end, json=body, headers=as_node("secret-a" * 4))
        assert (again.status, await error_code(again)) == (409, "exec_session_ended")
        async with client.app[DATABASE].session() as session:
            record = await session.get(ExecSession, uuid.UUID(session_id))
        assert record is not None
        assert (record.exit_code, record.end_reason) == (0, "exited")
        assert record.started_at is not None
        assert record.started_at.timestamp() == 1_800_000_000.5
    finally:
        await client.close()
