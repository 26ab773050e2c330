"""Nodes: admin-only management, one-time enrolment, drain/delete, and the SFTP
credential check agents make with their node secret. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import asyncssh
import pytest
import structlog
from aiohttp.test_utils import TestClient

from agent.config import load_identity
from agent.daemon import load_or_enrol
from controlplane.db.engine import Database, create_engine
from controlplane.db.tables import Deployment, Replica
from tests.controlplane.accounts_support import Account, bearer, error_code, expect_json, register
from tests.controlplane.cluster_support import agent_config, create_node
from tests.controlplane.conftest import ConfigFactory, start_client

Client = TestClient[Any, Any]
FINGERPRINT = {
    "cpu_count": 4,
    "memory_bytes": 8 * 2**30,
    "allocatable_disk_bytes": 100 * 2**30,
    "os": "Debian",
    "hostname": "n1",
}


async def _enroll(api: Client, token: str) -> Any:
    return await api.post(
        "/v1/nodes/enroll",
        json={
            "join_token": token,
            "grpc_address": "127.0.0.1:50051",
            "http_address": "127.0.0.1:8081",
            "fingerprint": FINGERPRINT,
            "port_range_start": 32000,
            "port_range_end": 32100,
        },
    )


async def test_only_admins_manage_nodes(api: Client) -> None:
    admin = await register(api)
    user = await register(api)
    assert admin.is_admin
    response = await api.post("/v1/nodes", json={"name": "n1"}, headers=user.headers)
    assert response.status == 403
    assert (await api.get("/v1/nodes", headers=user.headers)).status == 403
    await create_node(api, admin, "n1")
    duplicate = await api.post("/v1/nodes", json={"name": "n1"}, headers=admin.headers)
    assert await error_code(duplicate) == "node_exists"


async def test_join_token_enrols_once_and_node_is_listed(api: Client) -> None:
    admin = await register(api)
    token = await create_node(api, admin, "n1")
    listed = await expect_json(await api.get("/v1/nodes", headers=admin.headers))
    assert [n["status"] for n in listed["nodes"]] == ["pending"]
    assert listed["pagination"]["total"] == 1

    enrolled = await expect_json(await _enroll(api, token))
    assert enrolled["node_secret"]
    again = await _enroll(api, token)
    assert again.status == 401
    assert await error_code(again) == "invalid_join_token"

    node = await expect_json(
        await api.get(f"/v1/nodes/{enrolled['node_id']}", headers=admin.headers)
    )
    assert node["fingerprint"]["hostname"] == "n1"
    assert node["cpu_millis"] == 4000
    assert node["memory_bytes"] == 8 * 2**30
    assert node["disk_bytes"] == 100 * 2**30
    assert (node["port_range_start"], node["port_range_end"]) == (32000, 32100)
    assert "secret" not in node
    assert "join_token_hash" not in node


async def test_drain_and_delete(api: Client) -> None:
    admin = await register(api)
    enrolled = await expect_json(await _enroll(api, await create_node(api, admin, "n1")))
    path = f"/v1/nodes/{enrolled['node_id']}"
    drained = await expect_json(await api.post(f"{path}/drain", headers=admin.headers))
    assert drained["status"] == "draining"
    assert drained["draining"] is True
    await expect_json(await api.delete(path, headers=admin.headers))
    missing = await api.get(path, headers=admin.headers)
    assert missing.status == 404
    assert await error_code(missing) == "node_not_found"


async def _replica_on(database_url: str, owner: Account, node_id: str) -> str:
    db = Database(create_engine(database_url))
    try:
        deployment = Deployment(user_id=uuid.UUID(owner.id), app_name="game", image="x")
        replica = Replica(deployment_id=deployment.id, ordinal=0, node_id=uuid.UUID(node_id))
        async with db.transaction() as session:
            session.add(deployment)
            await session.flush()
            session.add(replica)
        return str(replica.id)
    finally:
        await db.close()


async def test_sftp_auth_grants_owner_by_password_or_key(api: Client, database_url: str) -> None:
    admin = await register(api)
    owner = await register(api)
    enrolled = await expect_json(await _enroll(api, await create_node(api, admin, "n1")))
    server_id = await _replica_on(database_url, owner, enrolled["node_id"])
    node = bearer(enrolled["node_secret"])
    username = f"{owner.username}.{server_id[:8]}"

    def login(**fields: Any) -> Any:
        body = {"username": username, "client_address": "127.0.0.1", **fields}
        return api.post("/v1/remote/sftp/auth", json=body, headers=node)

    grant = await expect_json(await login(password=owner.password))
    assert grant["server_id"] == server_id
    assert grant["user_id"] == owner.id
    assert set(grant["permissions"]) == {"file.read", "file.write"}

    assert await error_code(await login(password="wrong-password")) == "invalid_credentials"
    bad_node = await api.post(
        "/v1/remote/sftp/auth",
        json={"username": username, "password": owner.password},
        headers=bearer("not-a-node-secret"),
    )
    assert bad_node.status == 401
    stranger = await register(api)
    response = await api.post(
        "/v1/remote/sftp/auth",
        json={"username": f"{stranger.username}.{server_id[:8]}", "password": stranger.password},
        headers=node,
    )
    assert response.status == 404
    admin_login = await api.post(
        "/v1/remote/sftp/auth",
        json={"username": f"{admin.username}.{server_id[:8]}", "password": admin.password},
        headers=node,
    )
    assert admin_login.status == 200

    key = await asyncio.to_thread(asyncssh.generate_private_key, "ssh-ed25519")
    public = key.export_public_key("openssh").decode()
    added = await api.post(
        "/v1/user/ssh-keys", json={"name": "k", "public_key": public}, headers=owner.headers
    )
    assert added.status == 201
    assert (await expect_json(await login(public_key=public)))["server_id"] == server_id
    other_key = await asyncio.to_thread(asyncssh.generate_private_key, "ssh-ed25519")
    unknown = other_key.export_public_key("openssh").decode()
    assert (await login(public_key=unknown)).status == 401


async def test_a_node_secret_cannot_test_credentials_of_accounts_without_servers_there(
    api: Client, database_url: str
) -> None:
    admin = await register(api)
    owner = await register(api)
    victim = await register(api)  # owns nothing on this node
    enrolled = await expect_json(await _enroll(api, await create_node(api, admin, "n1")))
    server_id = await _replica_on(database_url, owner, enrolled["node_id"])
    node = bearer(enrolled["node_secret"])
    key = await asyncio.to_thread(asyncssh.generate_private_key, "ssh-ed25519")
    public = key.export_public_key("openssh").decode()
    added = await api.post(
        "/v1/user/ssh-keys", json={"name": "k", "public_key": public}, headers=victim.headers
    )
    assert added.status == 201

    async def answer(username: str, **credential: str) -> tuple[int, str]:
        body = {"username": username, **credential}
        response = await api.post("/v1/remote/sftp/auth", json=body, headers=node)
        return response.status, await error_code(response)

    # Right and wrong credentials get the same answer: nothing is learnt about them.
    for prefix in (server_id[:8], "deadbeef"):
        username = f"{victim.username}.{prefix}"
        refused = (404, "server_not_found")
        assert await answer(username, password=victim.password) == refused
        assert await answer(username, password="wrong-password") == refused
        assert await answer(username, public_key=public) == refused


async def test_failed_sftp_key_logins_are_limited_per_node_and_account(
    make_config: ConfigFactory, database_url: str
) -> None:
    """Public-key attempts have their own budget; password attempts go through the
    login throttle (tests/controlplane/test_login_throttle.py)."""
    api = await start_client(make_config(auth_rate_limit=3))
    try:
        admin = await register(api)
        owner = await register(api)
        enrolled = await expect_json(await _enroll(api, await create_node(api, admin, "n1")))
        server_id = await _replica_on(database_url, owner, enrolled["node_id"])
        node = bearer(enrolled["node_secret"])
        key = await asyncio.to_thread(asyncssh.generate_private_key, "ssh-ed25519")
        unknown_key = key.export_public_key("openssh").decode()

        def login(username: str, **credential: str) -> Any:
            body = {"username": f"{username}.{server_id[:8]}", **credential}
            return api.post("/v1/remote/sftp/auth", json=body, headers=node)

        for _ in range(3):
            assert (await login(owner.username, public_key=unknown_key)).status == 401
        limited = await login(owner.username, public_key=unknown_key)
        assert limited.status == 429
        assert await error_code(limited) == "rate_limited"
        assert 1 <= int(limited.headers["Retry-After"]) <= 60
        # Key failures do not hold back the account's password, nor another account.
        assert (await login(owner.username, password=owner.password)).status == 200
        assert (await login(admin.username, public_key=unknown_key)).status == 401
    finally:
        await api.close()


@pytest.mark.docker
async def test_agent_enrols_once_and_keeps_its_identity(api: Client, tmp_path: Path) -> None:
    admin = await register(api)
    token = await create_node(api, admin, "n1")
    config = agent_config(
        tmp_path / "agent", str(api.make_url("")), token, reserved={"disk_mb": 64}
    )
    identity = await load_or_enrol(config)
    assert await asyncio.to_thread(load_identity, config) == identity
    # The token is spent: a second enrolment would fail, so this proves none happens.
    with structlog.testing.capture_logs() as logs:
        assert await load_or_enrol(config) == identity
    [ignored] = [entry for entry in logs if entry["event"] == "join_token_ignored"]
    assert str(config.node_file) in ignored["hint"]
    node = await expect_json(await api.get(f"/v1/nodes/{identity.node_id}", headers=admin.headers))
    assert node["grpc_address"] == f"127.0.0.1:{config.grpc.port}"
    assert node["fingerprint"]["cpu_count"] >= 1
    # The real agent's room for volumes: its data_dir filesystem less the reserve.
    fingerprint = node["fingerprint"]
    reserve = config.reserved.disk_bytes
    assert node["disk_bytes"] == fingerprint["disk_bytes"] - reserve > 0
