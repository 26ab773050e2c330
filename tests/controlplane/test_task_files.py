"""Task input files in the input store, on both databases: an upload is streamed into
chunks and served back whole (GET /v1/remote/task-files/{id}) only to the node its
task runs on; a request that fails keeps nothing of what it uploaded; staged files a
dead request left are swept."""

from __future__ import annotations

import hashlib
import io
import json
import os
import uuid
from datetime import timedelta
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import func, update
from sqlmodel import col, select

from controlplane.db.tables import Node, Task, TaskFile, TaskFileChunk
from controlplane.db.types import utcnow
from controlplane.state import DATABASE
from controlplane.tasks.input_store import CHUNK_BYTES, STAGED_GRACE, InputStore
from tests.conftest import TEST_IMAGE
from tests.controlplane.accounts_support import Account, error_code, register
from tests.controlplane.conftest import ConfigFactory, start_client

pytestmark = pytest.mark.usefixtures("blocking_guard")
SECRET_A, SECRET_B = "node-a-secret-" * 3, "node-b-secret-" * 3


def form(spec: dict[str, Any], *files: tuple[str, bytes]) -> aiohttp.FormData:
    data = aiohttp.FormData()
    data.add_field("task", json.dumps(spec), content_type="application/json")
    for name, content in files:
        data.add_field("files", io.BytesIO(content), filename=name)
    return data


async def counts(client: TestClient[Any, Any]) -> tuple[int, int]:
    """(task_files rows, task_file_chunks rows)."""
    async with client.app[DATABASE].session() as session:
        files = (await session.exec(select(func.count()).select_from(TaskFile))).one()
        chunks = (await session.exec(select(func.count()).select_from(TaskFileChunk))).one()
    return files, chunks


async def nodes(client: TestClient[Any, Any]) -> tuple[uuid.UUID, uuid.UUID]:
    async with client.app[DATABASE].transaction() as session:
        a = Node(name=f"a-{uuid.uuid4().hex[:6]}", status="ready", secret=SECRET_A)
        b = Node(name=f"b-{uuid.uuid4().hex[:6]}", status="ready", secret=SECRET_B)
        session.add_all([a, b])
    return a.id, b.id


def as_node(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


async def test_an_upload_is_served_whole_only_to_the_node_running_its_task(
    api: TestClient[Any, Any],
) -> None:
    owner = await register(api)
    content = os.urandom(2 * CHUNK_BYTES + 12345)  # three chunks, the last one short
    created = await api.post(
        "/v1/tasks",
        data=form({"image": TEST_IMAGE, "command": "true"}, ("in/big.bin", content)),
        headers=owner.headers,
    )
    body = await created.json()
    assert created.status == 201, body
    (item,) = body["files"]
    assert (item["path"], item["size"]) == ("in/big.bin", len(content))
    assert await counts(api) == (1, 3)
    node_a, _ = await nodes(api)
    url = f"/v1/remote/task-files/{item['id']}"

    pending = await api.get(url, headers=as_node(SECRET_A))
    assert (pending.status, await error_code(pending)) == (404, "file_not_found")
    async with api.app[DATABASE].transaction() as session:
        await session.exec(
            update(Task)
            .where(col(Task.id) == uuid.UUID(body["id"]))
            .values(status="Running", node_id=node_a)
        )
    served = await api.get(url, headers=as_node(SECRET_A))
    assert served.status == 200
    assert served.headers["X-Content-SHA256"] == hashlib.sha256(content).hexdigest()
    assert served.content_length == len(content)
    assert await served.read() == content

    other = await api.get(url, headers=as_node(SECRET_B))
    assert (other.status, await error_code(other)) == (404, "file_not_found")
    stranger = await api.get(url, headers=as_node("not-a-node-secret"))
    assert (stranger.status, await error_code(stranger)) == (401, "invalid_node_secret")
    user = await api.get(url, headers=owner.headers)  # a user's token is no node secret
    assert user.status == 401

    deleted = await api.delete(f"/v1/tasks/{body['id']}", headers=owner.headers)
    assert deleted.status == 200
    assert await counts(api) == (0, 0)


async def test_a_request_that_fails_keeps_nothing_it_uploaded(
    make_config: ConfigFactory,
) -> None:
    client = await start_client(make_config(task_input_max_bytes=3 * CHUNK_BYTES))
    try:
        owner: Account = await register(client)
        payload = os.urandom(CHUNK_BYTES + 1)
        cases = [
            # A spec that does not validate, after the files were stored.
            (form({"command": "true"}, ("a.bin", payload)), 400),
            # Over the total: the second file is refused mid-way.
            (form({"image": TEST_IMAGE}, ("a.bin", payload), ("b.bin", payload * 2)), 413),
            # Two files at one path.
            (form({"image": TEST_IMAGE}, ("a.bin", payload), ("a.bin", b"x")), 400),
        ]
        for data, status in cases:
            answer = await client.post("/v1/tasks", data=data, headers=owner.headers)
            assert answer.status == status, await answer.text()
            assert await counts(client) == (0, 0)
    finally:
        await client.close()


async def test_staged_files_a_dead_request_left_are_swept(api: TestClient[Any, Any]) -> None:
    store = InputStore(api.app[DATABASE])
    old = await store.store(b"left behind")
    fresh = await store.store(b"being received")
    async with api.app[DATABASE].transaction() as session:
        await session.exec(
            update(TaskFile)
            .where(col(TaskFile.id) == old.id)
            .values(created_at=utcnow() - STAGED_GRACE - timedelta(minutes=1))
        )
    owner = await register(api)
    created = await api.post(
        "/v1/tasks", json={"image": TEST_IMAGE, "command": "true"}, headers=owner.headers
    )
    assert created.status == 201
    async with api.app[DATABASE].session() as session:
        left = (await session.exec(select(TaskFile.id))).all()
    assert list(left) == [fresh.id]


async def test_inline_files_stored_for_a_task_its_quota_refuses_are_discarded(
    api: TestClient[Any, Any],
) -> None:
    admin = await register(api)  # the first account is the admin
    owner = await register(api)
    limited = await api.put(
        f"/v1/users/{owner.id}/quota", json={"memory_bytes": 1024**2}, headers=admin.headers
    )
    assert limited.status == 200, await limited.text()
    refused = await api.post(
        "/v1/tasks",
        json={"image": TEST_IMAGE, "files": [{"path": "a.txt", "content": "alpha"}]},
        headers=owner.headers,
    )
    assert refused.status == 403, await refused.text()
    assert await counts(api) == (0, 0)
