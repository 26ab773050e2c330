"""Bodies and query strings built to crash the parser (issue 9, finding 6): deep nesting,
NaN, integers beyond 64 bits, multipart parts of the wrong shape. Every one is a 400
in the error envelope, logged in one line, never a 500 with a traceback.

The deep-nesting body is sent to every route of the route table that can take a body.
SQLite only: these requests never reach SQL."""

from __future__ import annotations

import logging
import uuid
from typing import Any

import pytest
import structlog
from aiohttp import FormData
from aiohttp.test_utils import TestClient

from controlplane.api.routes import build_routes
from tests.controlplane.accounts_support import (
    Account,
    bearer,
    create_api_key,
    error_code,
    register,
)

Client = TestClient[Any, Any]
SQLITE = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
DEEP = b"[" * 100_000
BODY_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
#: Routes that read their JSON body by hand rather than through a `body` model.
HAND_READ = {("POST", "/v1/tasks")}


def _concrete(path: str) -> str:
    parts = path.split("/")
    return "/".join(str(uuid.uuid4()) if p.startswith("{") else p for p in parts)


def _body_routes() -> list[tuple[str, str, bool]]:
    """(method, path, reads JSON) of every route that may take a body."""
    return [
        (e.method, e.path, e.body_model is not None or (e.method, e.path) in HAND_READ)
        for e in build_routes().endpoints
        if e.method in BODY_METHODS
    ]


def test_the_route_table_has_json_routes() -> None:
    assert sum(reads for _, _, reads in _body_routes()) >= 15


async def _assert_refused(answer: Any, reads_json: bool, what: str) -> None:
    text = await answer.text()
    assert answer.status < 500, f"{what}: {answer.status} {text[:300]}"
    if reads_json:
        assert answer.status == 400, f"{what}: {answer.status} {text[:300]}"
        assert await error_code(answer) == "invalid_json", what


@SQLITE
async def test_deep_nesting_is_a_400_on_every_json_route(
    api: Client, caplog: pytest.LogCaptureFixture
) -> None:
    admin = await register(api)  # the first account is an admin: every route is reachable
    # An API key, not the session: POST /v1/auth/logout must not end the test's login.
    admin_headers = bearer(await create_api_key(api, admin))
    for method, path, reads_json in _body_routes():
        for headers in (admin_headers, {}):
            answer = await api.request(
                method,
                _concrete(path),
                data=DEEP,
                headers={**headers, "Content-Type": "application/json"},
            )
            await _assert_refused(answer, reads_json and bool(headers), f"{method} {path}")
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"


@SQLITE
async def test_unauthenticated_routes_refuse_it_before_anything_else(api: Client) -> None:
    for path in ("/v1/auth/login", "/v1/auth/register", "/v1/nodes/enroll"):
        answer = await api.post(path, data=DEEP, headers={"Content-Type": "application/json"})
        await _assert_refused(answer, True, path)


@SQLITE
@pytest.mark.parametrize(
    "body",
    [
        b"[" * 33 + b"]" * 33,
        b'{"email": "a@example.com", "password": NaN}',
        b'{"email": "a@example.com", "password": Infinity}',
        b'{"username": "someone", "password": 123456789012345678901234567890}',
        b'{"username": "someone", "password": ' + b"9" * 5000 + b"}",
    ],
)
async def test_every_kind_of_hostile_json_is_a_400(api: Client, body: bytes) -> None:
    answer = await api.post(
        "/v1/auth/login", data=body, headers={"Content-Type": "application/json"}
    )
    await _assert_refused(answer, True, body[:40].decode())


@SQLITE
async def test_an_integer_query_parameter_beyond_64_bits_is_a_400(api: Client) -> None:
    owner = await register(api)
    task = uuid.uuid4()
    for query in (f"tail={2**64}", f"tail=-{2**64}", "tail=" + "9" * 5000):
        answer = await api.get(f"/v1/tasks/{task}/logs?{query}", headers=owner.headers)
        assert answer.status == 400, (query[:30], answer.status, await answer.text())
        assert await error_code(answer) == "validation_error"
    listed = await api.get(f"/v1/deployments?limit={2**64}", headers=owner.headers)
    assert listed.status == 400


def _form(task_part: bytes) -> FormData:
    form = FormData()
    form.add_field("task", task_part.decode(), content_type="application/json")
    return form


async def _post_task(api: Client, owner: Account, data: Any, content_type: str = "") -> Any:
    headers = {**owner.headers, **({"Content-Type": content_type} if content_type else {})}
    return await api.post("/v1/tasks", headers=headers, data=data)


@SQLITE
@pytest.mark.parametrize(
    "part",
    [b'["a", "list"]', b'"a string"', b"3", b"[" * 100_000, b'{"image": NaN}'],
)
async def test_a_multipart_task_part_that_is_not_an_object_is_a_400(
    api: Client, part: bytes
) -> None:
    owner = await register(api)
    answer = await _post_task(api, owner, _form(part))
    assert answer.status == 400, await answer.text()
    assert await error_code(answer) in ("invalid_json", "validation_error")


@SQLITE
async def test_a_multipart_env_part_that_is_not_an_object_is_a_400(api: Client) -> None:
    owner = await register(api)
    form = FormData()
    form.add_field("image", "encedeus/busybox:latest")
    form.add_field("env", '["A=1"]')
    answer = await _post_task(api, owner, form)
    assert answer.status == 400, await answer.text()


@SQLITE
@pytest.mark.parametrize(
    "part_head",
    [
        b"Content-Disposition form-data; name=task\r\n",  # no colon
        b"Content-Disposition: form-data; name=task\r\n\x00\x01garbage\r\n",
        b'Content-Disposition: form-data; name="task\r\nContent-Length: x\r\n',
        b"\r\n" * 3,
        b"Content-Length: -5\r\nContent-Disposition: form-data; name=task\r\n",
    ],
)
async def test_a_malformed_part_header_is_a_400(
    api: Client, part_head: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    owner = await register(api)
    body = b"--XyZ\r\n" + part_head + b"\r\n{}\r\n--XyZ--\r\n"
    answer = await _post_task(api, owner, body, "multipart/form-data; boundary=XyZ")
    assert answer.status == 400, await answer.text()
    assert (await answer.json())["error"]["code"] in (
        "invalid_form",
        "invalid_json",
        "validation_error",
    )
    assert not [r for r in caplog.records if r.exc_info and r.levelno >= logging.ERROR]


@SQLITE
async def test_a_refused_body_is_logged_in_one_line(api: Client) -> None:
    owner = await register(api)
    with structlog.testing.capture_logs() as logs:
        await api.post("/v1/auth/login", data=DEEP, headers={"Content-Type": "application/json"})
        await _post_task(api, owner, b"--XyZ\r\n\r\n", "multipart/form-data; boundary=XyZ")
    events = [(entry["event"], entry["log_level"]) for entry in logs]
    assert ("invalid_json", "info") in events
    assert all(level != "error" for _, level in events)
    assert not [entry for entry in logs if "exc_info" in entry or "exception" in entry]


@SQLITE
async def test_the_longest_documented_query_reaches_the_api(api: Client) -> None:
    # 1024 characters of 4 UTF-8 bytes each, percent-encoded: a 12 KiB request line,
    # past aiohttp's default 8190 bytes, whose refusal is a plain-text 400.
    owner = await register(api)
    path = "/" + "\U00021cf3" * 1023
    answer = await api.get(
        f"/v1/deployments/{uuid.uuid4()}/replicas/0/files",
        params={"path": path},
        headers=owner.headers,
    )
    assert answer.status == 404, await answer.text()
    assert await error_code(answer) == "deployment_not_found"


@SQLITE
@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("application/json", DEEP),
        ("application/yaml", DEEP),
        ("application/json", b'{"meta": {"version": "PTDL_v2"}, "docker_images": {}, '
         b'"startup": "x", "config": {"files": "' + b"[" * 100_000 + b'"}}'),
    ],
)  # fmt: skip
async def test_template_bodies_nested_too_deeply_are_refused(
    api: Client, content_type: str, body: bytes
) -> None:
    admin = await register(api)  # the first account is the admin
    answer = await api.post(
        "/v1/templates", data=body, headers={**admin.headers, "Content-Type": content_type}
    )
    assert 400 <= answer.status < 500, (answer.status, (await answer.text())[:300])
