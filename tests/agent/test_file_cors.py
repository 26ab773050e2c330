"""CORS of the agent's file API (agent/files/cors.py): only the listed origins (the web
UI's) may preflight and read answers; the browser test proves uploads end to end."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from agent.files.cors import FileCors

PANEL = "http://panel.example.test"
URL = "/api/servers/s1/files/upload?path=/a&token=t"


async def _client(allowed: list[str]) -> TestClient[Any, Any]:
    async def upload(request: web.Request) -> web.Response:
        return web.json_response({"path": "/a", "size": 0}, status=201)

    app = web.Application()
    app.router.add_put("/api/servers/{server_id}/files/upload", upload)
    app.router.add_get("/health", upload)
    FileCors(allowed).install(app)
    client: TestClient[Any, Any] = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    return client


async def test_listed_origins_preflight_and_read_answers_others_do_not() -> None:
    client = await _client([PANEL])
    try:
        preflight = await client.options(
            URL, headers={"Origin": PANEL, "Access-Control-Request-Method": "PUT"}
        )
        assert preflight.status == 204
        assert preflight.headers["Access-Control-Allow-Origin"] == PANEL
        assert "PUT" in preflight.headers["Access-Control-Allow-Methods"]
        answer = await client.put(URL, data=b"x", headers={"Origin": PANEL})
        assert answer.status == 201
        assert answer.headers["Access-Control-Allow-Origin"] == PANEL
        assert "Upload-Offset" in answer.headers["Access-Control-Expose-Headers"]

        evil = "http://evil.example.test"
        assert (await client.options(URL, headers={"Origin": evil})).status == 403
        foreign = await client.put(URL, data=b"x", headers={"Origin": evil})
        assert "Access-Control-Allow-Origin" not in foreign.headers
        other_path = await client.get("/health", headers={"Origin": PANEL})
        assert "Access-Control-Allow-Origin" not in other_path.headers
    finally:
        await client.close()


async def test_without_listed_origins_no_page_may_read() -> None:
    client = await _client([])
    try:
        assert (await client.options(URL, headers={"Origin": PANEL})).status == 403
        answer = await client.put(URL, data=b"x", headers={"Origin": PANEL})
        assert "Access-Control-Allow-Origin" not in answer.headers
    finally:
        await client.close()
