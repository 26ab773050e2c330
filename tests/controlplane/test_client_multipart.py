"""The CLI's multipart bodies, read back by aiohttp's own multipart parser."""

from __future__ import annotations

import pytest
from aiohttp import BodyPartReader, web
from aiohttp.test_utils import TestClient, TestServer

from controlplane.client.api import ClientError, UploadFile, multipart_body


async def echo_parts(request: web.Request) -> web.Response:
    reader = await request.multipart()
    parts = []
    async for part in reader:
        assert isinstance(part, BodyPartReader)
        parts.append(
            {"name": part.name, "filename": part.filename, "body": (await part.read()).decode()}
        )
    return web.json_response(parts)


@pytest.fixture
def app() -> web.Application:
    application = web.Application()
    application.router.add_post("/", echo_parts)
    return application


@pytest.mark.parametrize("filename", ["input.txt", 'odd "quoted" name.txt', "dir/x y.bin"])
async def test_file_names_round_trip(app: web.Application, filename: str) -> None:
    body, content_type = multipart_body(
        {"image": "busybox"}, [UploadFile("files", filename, b"content")]
    )
    async with TestClient(TestServer(app)) as client:
        response = await client.post("/", data=body, headers={"Content-Type": content_type})
        parts = await response.json()
    assert parts == [
        {"name": "image", "filename": None, "body": "busybox"},
        {"name": "files", "filename": filename, "body": "content"},
    ]


def test_line_breaks_in_file_names_are_refused() -> None:
    with pytest.raises(ClientError, match="line break"):
        multipart_body({}, [UploadFile("files", "a\r\nContent-Type: x", b"")])
