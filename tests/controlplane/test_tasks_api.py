"""/v1/tasks without agents: create (JSON, multipart, URL inputs), list, get, status,
delete, owner isolation, input limits. Starting needs agents: see tests/e2e."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from controlplane.cli import main
from controlplane.db.tables import Node
from controlplane.state import DATABASE
from tests.conftest import TEST_IMAGE
from tests.controlplane.accounts_support import Account, error_code, register
from tests.controlplane.conftest import ConfigFactory, start_client
from tests.local_http import serve_app
from tests.outbound_support import LOOPBACK_HOSTS, counting_listener

pytestmark = pytest.mark.usefixtures("blocking_guard")


@pytest.fixture
async def file_server() -> AsyncIterator[str]:
    async def data(request: web.Request) -> web.Response:
        return web.Response(body=b"fetched bytes\n", content_type="text/plain")

    async def big(request: web.Request) -> web.Response:
        return web.Response(body=b"z" * 5000)

    app = web.Application()
    app.router.add_get("/data.txt", data)
    app.router.add_get("/big.bin", big)
    async with serve_app(app) as url:
        yield url


async def create(client: TestClient[Any, Any], account: Account, **spec: Any) -> Any:
    response = await client.post(
        "/v1/tasks", json={"image": TEST_IMAGE, **spec}, headers=account.headers
    )
    body = await response.json()
    assert response.status == 201, body
    return body


async def test_tasks_without_resources_get_default_limits(api: TestClient[Any, Any]) -> None:
    owner = await register(api)
    plain = await create(api, owner, command="true")
    assert plain["resources"] == {"cpu_millis": 1000, "memory_bytes": 512 * 2**20}
    partial = await create(api, owner, command="true", resources={"memory": "1Gi"})
    assert partial["resources"] == {"cpu_millis": 1000, "memory_bytes": 2**30}


async def test_create_get_status_list_delete(api: TestClient[Any, Any]) -> None:
    owner = await register(api)
    created = await create(
        api,
        owner,
        name="hello",
        command="echo hello",
        env={"A": "1"},
        resources={"cpu": "250m", "memory": "64Mi"},
        files=[
            {"path": "in/a.txt", "content": "alpha"},
            {"path": "b.bin", "content_base64": base64.b64encode(b"\x00\x01").decode()},
        ],
    )
    assert created["status"] == "Pending"
    assert created["message"] == "Task successfully added"
    assert created["command"] == ["sh", "-c", "echo hello"]
    assert created["resources"] == {"cpu_millis": 250, "memory_bytes": 64 * 2**20}
    assert sorted((f["path"], f["size"]) for f in created["files"]) == [
        ("b.bin", 2),
        ("in/a.txt", 5),
    ]

    task_id = created["id"]
    got = await (await api.get(f"/v1/tasks/{task_id}", headers=owner.headers)).json()
    assert got["name"] == "hello"
    status = await (await api.get(f"/v1/tasks/{task_id}/status", headers=owner.headers)).json()
    assert status["status"] == "Pending"
    assert status["exit_code"] is None

    listed = await (await api.get("/v1/tasks?limit=1", headers=owner.headers)).json()
    assert listed["pagination"]["total"] == 1
    assert [t["id"] for t in listed["tasks"]] == [task_id]
    filtered = await (await api.get("/v1/tasks?status=Running", headers=owner.headers)).json()
    assert filtered["tasks"] == []

    logs = await api.get(f"/v1/tasks/{task_id}/logs", headers=owner.headers)
    assert logs.status == 200
    assert await logs.text() == ""

    deleted = await api.delete(f"/v1/tasks/{task_id}", headers=owner.headers)
    body = await deleted.json()
    assert deleted.status == 200, body
    assert body["removed_task"]["id"] == task_id
    gone = await api.get(f"/v1/tasks/{task_id}", headers=owner.headers)
    assert gone.status == 404


async def test_another_account_gets_404_everywhere(api: TestClient[Any, Any]) -> None:
    owner = await register(api)
    stranger = await register(api)
    task_id = (await create(api, owner))["id"]
    for method, path in [
        ("GET", f"/v1/tasks/{task_id}"),
        ("GET", f"/v1/tasks/{task_id}/status"),
        ("GET", f"/v1/tasks/{task_id}/logs"),
        ("POST", f"/v1/tasks/{task_id}"),
        ("DELETE", f"/v1/tasks/{task_id}"),
    ]:
        response = await api.request(method, path, headers=stranger.headers)
        assert response.status == 404, (method, path)
        assert await error_code(response) == "task_not_found"
    listed = await (await api.get("/v1/tasks", headers=stranger.headers)).json()
    assert listed["tasks"] == []
    assert (await api.get("/v1/tasks")).status == 401


async def test_multipart_uploads_land_at_their_paths(api: TestClient[Any, Any]) -> None:
    owner = await register(api)
    form = aiohttp.FormData()
    form.add_field("task", json.dumps({"image": TEST_IMAGE, "command": ["cat", "notes.txt"]}))
    form.add_field("files", b"some notes", filename="notes.txt", content_type="text/plain")
    form.add_field("files", b"\x7fELF", filename="bin/tool")
    response = await api.post("/v1/tasks", data=form, headers=owner.headers)
    body = await response.json()
    assert response.status == 201, body
    assert sorted(f["path"] for f in body["files"]) == ["bin/tool", "notes.txt"]
    assert body["command"] == ["cat", "notes.txt"]


async def test_starting_with_no_node_enrolled_is_refused_as_never_fitting(
    api: TestClient[Any, Any],
) -> None:
    owner = await register(api)
    task_id = (await create(api, owner))["id"]
    response = await api.post(f"/v1/tasks/{task_id}", headers=owner.headers)
    body = await response.json()
    assert response.status == 422, body
    assert body["error"]["code"] == "task_never_fits"
    status = await (await api.get(f"/v1/tasks/{task_id}/status", headers=owner.headers)).json()
    assert status["status"] == "Pending"
    assert status["queue_position"] is None


async def test_a_task_with_no_room_now_waits_in_the_queue_with_its_position(
    api: TestClient[Any, Any],
) -> None:
    # An enrolled node whose agent is not connected: big enough, but no room now.
    async with api.app[DATABASE].transaction() as session:
        session.add(Node(name="offline", status="ready", cpu_millis=4000, memory_bytes=8 * 2**30))
    owner = await register(api)
    first, second = [(await create(api, owner))["id"] for _ in range(2)]
    answers = [await api.post(f"/v1/tasks/{t}", headers=owner.headers) for t in (first, second)]
    assert [a.status for a in answers] == [202, 202]
    queued = await answers[1].json()
    assert queued["status"] == "Pending"
    assert queued["queue_position"] == 2
    assert queued["queue_reason"].startswith("waiting for a node large enough")
    again = await api.post(f"/v1/tasks/{first}", headers=owner.headers)
    assert (again.status, await error_code(again)) == (409, "task_started")
    status = await (await api.get(f"/v1/tasks/{first}/status", headers=owner.headers)).json()
    assert (status["queue_position"], status["attempts"]) == (1, 0)
    listed = await (await api.get("/v1/tasks", headers=owner.headers)).json()
    assert sorted(t["queue_position"] for t in listed["tasks"]) == [1, 2]


async def test_cli_run_says_a_task_is_queued_and_waits_for_it(
    api: TestClient[Any, Any],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    async with api.app[DATABASE].transaction() as session:
        session.add(Node(name="offline", status="ready", cpu_millis=4000, memory_bytes=2**33))
    owner = await register(api)
    monkeypatch.setenv("ENCEDEUS_URL", str(api.make_url("")).rstrip("/"))
    monkeypatch.setenv("ENCEDEUS_TOKEN", owner.access_token)
    argv = ["tasks", "run", TEST_IMAGE, "--timeout", "0.5", "--", "true"]
    assert await asyncio.to_thread(main, argv) == 1  # still queued when the wait ends
    assert "task queued at position 1: waiting for a node" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("spec", "status", "code"),
    [
        ({"image": ""}, 400, "validation_error"),
        ({"image": TEST_IMAGE, "resources": {"cpu": "lots"}}, 400, "validation_error"),
        ({"image": TEST_IMAGE, "env": {"A=B": "x"}}, 400, "validation_error"),
        ({"image": TEST_IMAGE, "files": [{"path": "../x", "content": "x"}]}, 400, None),
        ({"image": TEST_IMAGE, "files": [{"path": "/etc/x", "content": "x"}]}, 400, None),
        ({"image": TEST_IMAGE, "files": [{"url": "file:///etc/passwd"}]}, 422, "url_refused"),
        ({"image": TEST_IMAGE, "files": [{"url": "http://127.0.0.1:1/x"}]}, 422, "url_refused"),
        ({"image": TEST_IMAGE, "files": [{"url": "http://169.254.169.254/"}]}, 422, "url_refused"),
    ],
)
async def test_invalid_requests(
    api: TestClient[Any, Any], spec: dict[str, Any], status: int, code: str | None
) -> None:
    owner = await register(api)
    response = await api.post("/v1/tasks", json=spec, headers=owner.headers)
    assert response.status == status, await response.text()
    if code is not None:
        assert await error_code(response) == code


async def test_url_inputs_with_private_fetch_allowed(
    make_config: ConfigFactory, file_server: str
) -> None:
    client = await start_client(
        make_config(task_fetch_allow_private=True, task_fetch_max_bytes=4096)
    )
    try:
        owner = await register(client)
        created = await create(
            client,
            owner,
            files=[
                {"url": f"{file_server}/data.txt"},
                {"url": f"{file_server}/data.txt", "path": "copy"},
            ],
        )
        files = {f["path"]: f for f in created["files"]}
        assert files["data.txt"]["size"] == len(b"fetched bytes\n")
        assert files["data.txt"]["mime_type"] == "text/plain"
        assert files["copy"]["source_url"] == f"{file_server}/data.txt"

        too_big = await client.post(
            "/v1/tasks",
            json={"image": TEST_IMAGE, "files": [{"url": f"{file_server}/big.bin"}]},
            headers=owner.headers,
        )
        assert too_big.status == 413
        assert await error_code(too_big) == "input_too_large"
    finally:
        await client.close()


async def test_loopback_urls_refused_by_default(
    api: TestClient[Any, Any], file_server: str
) -> None:
    owner = await register(api)
    response = await api.post(
        "/v1/tasks",
        json={"image": TEST_IMAGE, "files": [{"url": f"{file_server}/data.txt"}]},
        headers=owner.headers,
    )
    assert response.status == 422
    body = await response.json()
    assert body["error"]["code"] == "url_refused"
    assert "loopback" in body["error"]["message"]


async def test_no_spelling_of_loopback_reaches_it_through_a_task_input(
    api: TestClient[Any, Any],
) -> None:
    """Finding 1 of issue 9: a full-width `127.0.0.1` URL (and every other spelling of
    loopback) read loopback services through a task input."""
    owner = await register(api)
    async with counting_listener() as listener:
        for host in LOOPBACK_HOSTS:
            response = await api.post(
                "/v1/tasks",
                json={"image": TEST_IMAGE, "files": [{"url": listener.url(host, "/x")}]},
                headers=owner.headers,
            )
            assert response.status == 422, (host, await response.text())
            assert await error_code(response) == "url_refused"
    assert listener.connections == 0


async def test_outbound_allowed_networks_open_only_those_networks(
    make_config: ConfigFactory,
) -> None:
    """`outbound_allowed_networks` opens 127.0.0.2 (playing an internal mirror) while
    127.0.0.1 stays refused."""

    async def data(request: web.Request) -> web.Response:
        return web.Response(body=b"mirrored\n", content_type="text/plain")

    app = web.Application()
    app.router.add_get("/data.txt", data)
    client = await start_client(make_config(outbound_allowed_networks=["127.0.0.2/32"]))
    try:
        owner = await register(client)
        async with serve_app(app, host="127.0.0.2") as mirror, counting_listener() as listener:
            created = await create(client, owner, files=[{"url": f"{mirror}/data.txt"}])
            refused = await client.post(
                "/v1/tasks",
                json={"image": TEST_IMAGE, "files": [{"url": listener.url("127.0.0.1")}]},
                headers=owner.headers,
            )
        assert created["files"][0]["size"] == len(b"mirrored\n")
        assert await error_code(refused) == "url_refused"
        assert listener.connections == 0
    finally:
        await client.close()


async def test_total_input_size_is_capped(make_config: ConfigFactory) -> None:
    client = await start_client(make_config(task_input_max_bytes=1000))
    try:
        owner = await register(client)
        form = aiohttp.FormData()
        form.add_field("image", TEST_IMAGE)
        form.add_field("files", b"x" * 2000, filename="big.bin")
        response = await client.post("/v1/tasks", data=form, headers=owner.headers)
        assert response.status == 413
    finally:
        await client.close()


async def test_malformed_multipart_is_a_client_error(api: TestClient[Any, Any]) -> None:
    owner = await register(api)
    headers = {**owner.headers, "Content-Type": "multipart/form-data"}
    response = await api.post("/v1/tasks", data=b"--x\r\n", headers=headers)
    assert response.status == 400
    assert await error_code(response) == "invalid_form"
