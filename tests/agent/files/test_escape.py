"""The SFTP escape cases (tests/agent/sftp/test_escape.py) replayed through every
operation of the HTTP file API: links to `/`, to a host file, to a sibling server,
chains, loops, relative climbs, `..` in the path. Every attempt is refused, nothing
outside the server directory changes or appears, and no answer carries a byte of it.
"""

from __future__ import annotations

import io
import json
import tarfile
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from tests.agent.files.conftest import FileAgent, agent_state_files, make_server_dir
from tests.agent.sftp.test_escape import _links_made_on_host, _snapshot, _tree_listing

# Paths that lead out through a `..` or a symlink on the way.
THROUGH = [
    "../outside.txt",
    "/../outside.txt",
    "..//../outside.txt",
    "sub/../../outside.txt",
    "root/etc/passwd",
    "chain1/etc/passwd",
    "abs_data/outside.txt",
    "sub/up/outside.txt",
    "sibling/secret.txt",
    "../BOB/secret.txt",
    "loop_a/x",
]
# Symlinks leading out, named as the final component: followed only by operations on
# what a path leads to (the ones acting on an entry itself act on the link).
FINAL_LINKS = ["shadow", "outside_rel", "root", "chain1", "sibling", "loop_a"]

Attempt = Callable[[FileAgent, str], Awaitable[tuple[int, str]]]


async def _answer(response: Any) -> tuple[int, str]:
    return response.status, (await response.read()).decode(errors="replace")


def _get(endpoint: str) -> Attempt:
    async def attempt(agent: FileAgent, path: str) -> tuple[int, str]:
        async with agent.http.get(
            agent.url(endpoint),
            params={"path": path},
            headers=agent.auth("file-download", path=path)
            if endpoint == "download"
            else agent.auth("file-relay"),
        ) as response:
            return await _answer(response)

    return attempt


def _upload(method: str, **query: str) -> Attempt:
    async def attempt(agent: FileAgent, path: str) -> tuple[int, str]:
        async with agent.http.request(
            method,
            agent.url("upload"),
            params={"path": path, **query},
            data=b"pwned\n" if method != "HEAD" else None,
            headers=agent.auth("file-upload", path=path),
        ) as response:
            return await _answer(response)

    return attempt


def _op(name: str, make: Callable[[str], dict[str, Any]]) -> Attempt:
    async def attempt(agent: FileAgent, path: str) -> tuple[int, str]:
        async with agent.http.post(
            agent.url(name), json=make(path), headers=agent.auth("file-relay")
        ) as response:
            return await _answer(response)

    return attempt


# (operation, attempt, also tried on FINAL_LINKS)
OPERATIONS: dict[str, tuple[Attempt, bool]] = {
    "list": (_get("list"), True),
    "stat": (_get("stat"), False),
    "download": (_get("download"), True),
    "upload_put": (_upload("PUT"), True),
    "upload_patch": (_upload("PATCH", offset="0"), True),
    "upload_head": (_upload("HEAD"), False),
    "mkdir": (_op("mkdir", lambda p: {"path": f"{p}/new", "parents": True}), True),
    "rename_from": (_op("rename", lambda p: {"source": p, "target": "stolen"}), False),
    "rename_to": (_op("rename", lambda p: {"source": "sub/file", "target": p}), True),
    "copy_from": (_op("copy", lambda p: {"source": p, "target": "copied"}), False),
    "copy_to": (_op("copy", lambda p: {"source": "sub/file", "target": f"{p}/c"}), True),
    "delete": (_op("delete", lambda p: {"path": p}), False),
    "chmod": (_op("chmod", lambda p: {"path": p, "mode": "0777"}), True),
    "compress_from": (_op("compress", lambda p: {"paths": [p], "target": "out.tgz"}), False),
    "compress_to": (_op("compress", lambda p: {"paths": ["sub"], "target": p}), True),
    "decompress_from": (_op("decompress", lambda p: {"path": p, "destination": "x"}), True),
    "decompress_to": (_op("decompress", lambda p: {"path": "good.tgz", "destination": p}), True),
}


def _good_archive(path: Path) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        entry = tarfile.TarInfo("pwned.txt")
        entry.size = 6
        tar.addfile(entry, io.BytesIO(b"pwned\n"))
    path.write_bytes(buffer.getvalue())


@pytest.mark.parametrize("operation", sorted(OPERATIONS))
async def test_no_file_operation_leaves_the_server_directory(
    file_agent: FileAgent, operation: str
) -> None:
    data_dir = file_agent.data_dir
    # Where the SFTP case's "../../outside.txt" lands from the server directory.
    outside = data_dir / "outside.txt"
    outside.write_text("outside sentinel\n")
    outside.chmod(0o640)
    bob_id = str(uuid.uuid4())
    bob = make_server_dir(data_dir, bob_id)
    (bob / "secret.txt").write_text("bob's secret\n")
    (bob / "secret.txt").chmod(0o600)
    (bob / "bobdir").mkdir()
    alice = file_agent.server_dir
    _links_made_on_host(alice, bob_id)
    _good_archive(alice / "good.tgz")
    sentinels = [outside, bob / "secret.txt", Path("/etc/shadow"), Path("/etc/passwd")]
    before = _snapshot(sentinels)
    listing_before = _tree_listing(data_dir.parent)
    alice_before = {p.name: p.lstat().st_mode for p in alice.iterdir()}

    attempt, on_final_links = OPERATIONS[operation]
    paths = [p.replace("BOB", bob_id) for p in THROUGH]
    paths += FINAL_LINKS if on_final_links else []
    for path in paths:
        status, text = await attempt(file_agent, path)
        assert status >= 400, (operation, path, status, text)
        if text:
            assert json.loads(text)["error"]["code"], text
        for leaked in ("bob's secret", "outside sentinel", "root:", str(data_dir)):
            assert leaked not in text, (operation, path, text)

    assert _snapshot(sentinels) == before
    new_paths = _tree_listing(data_dir.parent) - listing_before - agent_state_files(data_dir)
    assert all(p.startswith(str(alice)) for p in new_paths), new_paths
    assert {p.name: p.lstat().st_mode for p in alice.iterdir()} == alice_before
