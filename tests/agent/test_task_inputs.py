"""Input files named by `source`: the agent streams them from its control plane (a real
HTTP peer here) with its node secret, checks size and digest, and places them beneath
the data directory; anything else is refused and leaves nothing staged."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from agent.controlplane_client import HttpControlPlane
from agent.fleet.data_dir import prepare_data_dir
from agent.fleet.inputs import InputUnavailable, discard_staged, stage_inputs
from agent.runtime import InvalidSpec
from protos import agent_pb2 as pb
from tests.local_http import serve_app

SECRET = "node-secret-for-inputs"
CONTENT = os.urandom(3 * 1024 * 1024 + 7)  # more than one write chunk, not a multiple
SOURCE = "/v1/remote/task-files/1b2e"


@pytest.fixture
async def control_plane() -> AsyncIterator[HttpControlPlane]:
    async def task_file(request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {SECRET}":
            return web.json_response({"error": {"code": "invalid_node_secret"}}, status=401)
        if request.match_info["id"] != "1b2e":
            return web.json_response({"error": {"code": "file_not_found"}}, status=404)
        return web.Response(body=CONTENT)

    app = web.Application()
    app.router.add_get("/v1/remote/task-files/{id}", task_file)
    async with serve_app(app) as url:
        client = HttpControlPlane(url, SECRET)
        yield client
        await client.close()


def spec_with(*files: pb.InputFile) -> pb.ServerSpec:
    return pb.ServerSpec(id="task-1", image="img", files=files)


def remote(source: str = SOURCE, sha256: str = hashlib.sha256(CONTENT).hexdigest()) -> pb.InputFile:
    return pb.InputFile(
        path="in/data.bin", mode=0o640, source=source, size=len(CONTENT), sha256=sha256
    )


async def test_a_source_file_is_fetched_checked_and_placed(
    control_plane: HttpControlPlane, tmp_path: Path
) -> None:
    spec = spec_with(remote(), pb.InputFile(path="small.txt", content=b"inline"))
    staged = await stage_inputs(spec, control_plane, tmp_path / "inputs")
    try:
        owner = (os.getuid(), os.getgid())
        prepare_data_dir(tmp_path / "data", list(spec.files), owner, staged)
    finally:
        discard_staged(staged)
    placed = tmp_path / "data" / "in" / "data.bin"
    assert placed.read_bytes() == CONTENT
    assert placed.stat().st_mode & 0o777 == 0o640
    assert (tmp_path / "data" / "small.txt").read_bytes() == b"inline"
    assert list((tmp_path / "inputs").iterdir()) == []


@pytest.mark.parametrize(
    ("item", "reason"),
    [
        (remote(sha256="0" * 64), "not the announced"),
        (remote(source="/v1/remote/task-files/other"), "file_not_found"),
        (remote(source="/v1/nodes/enroll"), "not a task input file"),
    ],
)
async def test_a_file_that_cannot_be_had_as_announced_is_refused(
    control_plane: HttpControlPlane, tmp_path: Path, item: pb.InputFile, reason: str
) -> None:
    with pytest.raises(InputUnavailable, match=reason):
        await stage_inputs(spec_with(item), control_plane, tmp_path / "inputs")
    assert not any((tmp_path / "inputs").glob("*"))


async def test_a_wrong_node_secret_is_refused(
    control_plane: HttpControlPlane, tmp_path: Path
) -> None:
    control_plane.node_secret = "another-node"
    with pytest.raises(InputUnavailable, match="401"):
        await stage_inputs(spec_with(remote()), control_plane, tmp_path / "inputs")


def test_a_source_file_that_was_not_fetched_is_never_written(tmp_path: Path) -> None:
    with pytest.raises(InvalidSpec, match="were not fetched"):
        prepare_data_dir(tmp_path / "data", [remote()], (os.getuid(), os.getgid()), {})
