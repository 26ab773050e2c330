"""A replica's files through a real control plane and an enrolled in-process agent:
who may reach them (owner, admin; others 404), the relayed operations, and signed URLs
that go straight to the agent."""

from __future__ import annotations

import urllib.parse
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from agent.daemon import RunningAgent
from controlplane.api.remote import file_permissions
from controlplane.db.tables import Deployment, User
from tests.controlplane.accounts_support import Account, error_code, expect_json, register
from tests.controlplane.test_deployments import _create, _ready, _wait_status, cluster

__all__ = ["cluster"]  # the fixture, used by name below


def test_the_file_permission_rule() -> None:
    owner_id, other_id = uuid.uuid4(), uuid.uuid4()
    deployment = Deployment(user_id=owner_id, app_name="x", image="i")
    owner = User(id=owner_id, username="o", email="o@x", password_hash="", is_active=True)
    admin = User(id=other_id, username="a", email="a@x", password_hash="", is_admin=True)
    other = User(id=uuid.uuid4(), username="n", email="n@x", password_hash="")
    inactive = User(id=owner_id, username="o", email="o@x", password_hash="", is_active=False)
    assert file_permissions(owner, deployment) == ["file.read", "file.write"]
    assert file_permissions(admin, deployment) == ["file.read", "file.write"]
    assert file_permissions(other, deployment) == []
    assert file_permissions(inactive, deployment) == []
    assert file_permissions(None, deployment) == []


@pytest.mark.docker
async def test_owner_and_admin_reach_files_others_get_404(
    cluster: tuple[TestClient[Any, Any], Account, RunningAgent], tmp_path: Path
) -> None:
    client, admin, agent = cluster
    owner = await register(client)
    stranger = await register(client)
    dep = await _create(client, owner, replicas=1)
    await _wait_status(client, owner, dep, _ready(1))
    files = f"/v1/deployments/{dep}/replicas/0/files"

    signed = await expect_json(
        await client.post(f"{files}/upload-url", json={"path": "/note.txt"}, headers=owner.headers)
    )
    assert f":{agent.http.port}/api/servers/" in signed["url"]
    async with aiohttp.ClientSession() as http:
        async with http.put(signed["url"], data=b"hello files") as response:
            assert response.status == 201
        got = await expect_json(
            await client.get(f"{files}/download-url?path=/note.txt", headers=admin.headers)
        )
        async with http.get(got["url"], headers={"Range": "bytes=6-"}) as response:
            assert (response.status, await response.read()) == (206, b"files")
        # The upload URL's token uploads that one path and does nothing else.
        base, _, query = signed["url"].partition("/upload?")
        token = dict(urllib.parse.parse_qsl(query))["token"]
        async with http.post(f"{base}/delete?token={token}", json={"path": "/note.txt"}) as r:
            assert (r.status, (await r.json())["error"]["code"]) == (403, "wrong_operation")
        other = f"{base}/upload?path=/other.txt&token={token}"
        async with http.put(other, data=b"x") as response:
            assert (response.status, (await response.json())["error"]["code"]) == (
                403,
                "wrong_path",
            )

    listing = await expect_json(await client.get(f"{files}?path=/", headers=admin.headers))
    assert "note.txt" in [e["name"] for e in listing["entries"]]
    await expect_json(
        await client.post(
            f"{files}/rename",
            json={"source": "/note.txt", "target": "/n.txt"},
            headers=owner.headers,
        )
    )
    missing = await client.get(f"{files}/stat?path=/note.txt", headers=owner.headers)
    assert (missing.status, await error_code(missing)) == (404, "file_not_found")
    refused = await client.post(f"{files}/bogus", json={}, headers=owner.headers)
    assert refused.status in (404, 405)

    for method, path, body in (
        ("GET", f"{files}?path=/", None),
        ("GET", f"{files}/stat?path=/n.txt", None),
        ("POST", f"{files}/upload-url", {"path": "/x"}),
        ("GET", f"{files}/download-url?path=/n.txt", None),
        ("POST", f"{files}/delete", {"path": "/n.txt"}),
    ):
        answer = await client.request(method, path, json=body, headers=stranger.headers)
        assert (answer.status, await error_code(answer)) == (404, "deployment_not_found")
    no_replica = await client.get(f"/v1/deployments/{dep}/replicas/7/files", headers=owner.headers)
    assert (no_replica.status, await error_code(no_replica)) == (404, "replica_not_found")
    invalid = await client.post(f"{files}/chmod", json={"path": "/n.txt"}, headers=owner.headers)
    assert (invalid.status, await error_code(invalid)) == (400, "validation_error")
    pulled = await client.post(
        f"{files}/pull",
        json={"url": f"http://127.0.0.1:{agent.http.port}/health", "path": "/h"},
        headers=owner.headers,
    )
    assert (pulled.status, await error_code(pulled)) == (422, "url_refused")
    deleted = await expect_json(
        await client.post(f"{files}/delete", json={"path": "/n.txt"}, headers=owner.headers)
    )
    assert deleted["freed_bytes"] == len(b"hello files")
