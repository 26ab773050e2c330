"""Every file operation against a real agent over its HTTP port: listing, stat, ranged
reads, streamed writes, resumed uploads, mkdir, rename, copy, delete, chmod, archives,
ownership of what is made, and the token rules (scope, server, read-only grants)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import stat
import tarfile
import zipfile

import pytest
from blockbuster import blockbuster_ctx

from common.tokens import Scope
from tests.agent.conftest import allow_known_calls
from tests.agent.files.conftest import FileAgent, streamed

CONTAINER_USER = (988, 988)  # the agent's default container_user


async def test_list_stat_and_ranged_download(file_agent: FileAgent) -> None:
    root = file_agent.server_dir
    (root / "dir").mkdir()
    (root / "hello.txt").write_bytes(b"0123456789")
    (root / "link").symlink_to("hello.txt")

    status, listing = await file_agent.get("list", path="/")
    assert status == 200
    assert [(e["name"], e["type"]) for e in listing["entries"]] == [
        ("dir", "directory"),
        ("hello.txt", "file"),
        ("link", "symlink"),
    ]
    by_name = {e["name"]: e for e in listing["entries"]}
    assert by_name["hello.txt"]["size"] == 10
    assert by_name["link"]["link_target"] == "hello.txt"
    status, info = await file_agent.get("stat", path="hello.txt")
    assert (status, info["mode"], info["type"]) == (200, "0644", "file")

    assert await file_agent.download("hello.txt") == b"0123456789"
    assert await file_agent.download("/link", {"Range": "bytes=2-4"}) == b"234"
    assert await file_agent.download("hello.txt", {"Range": "bytes=-3"}) == b"789"
    open_fds = len(os.listdir("/proc/self/fd"))
    for _ in range(20):  # each download closes the fd it resolved beneath the root
        assert await file_agent.download("hello.txt", {"Range": "bytes=0-0"}) == b"0"
    assert len(os.listdir("/proc/self/fd")) <= open_fds + 2
    status, missing = await file_agent.get("stat", path="nope")
    assert (status, missing["error"]["code"]) == (404, "file_not_found")
    assert missing["error"]["message"] == "No such file or directory: nope"  # names the path
    status, outside = await file_agent.get("stat", path="../../etc/passwd")
    assert (status, outside["error"]["code"]) == (403, "outside_server_directory")
    assert outside["error"]["message"] == "outside the server's directory: ../../etc/passwd"


async def test_upload_makes_files_the_container_owns(file_agent: FileAgent) -> None:
    status, answer = await file_agent.put("up/load.bin", b"x")
    assert (status, answer["error"]["code"]) == (404, "file_not_found")  # no parent yet
    assert (await file_agent.op("mkdir", {"path": "up/deep", "parents": True}))[0] == 200

    data = os.urandom(3 * 1024 * 1024 + 17)
    status, answer = await file_agent.put("up/deep/load.bin", data)
    assert (status, answer["size"]) == (201, len(data))
    made = file_agent.server_dir / "up" / "deep" / "load.bin"
    assert made.read_bytes() == data
    for path in (made, made.parent, made.parent.parent):
        assert (path.stat().st_uid, path.stat().st_gid) == CONTAINER_USER
    status, _ = await file_agent.put("up/deep/load.bin", b"short")  # PUT replaces
    assert status == 201
    assert made.read_bytes() == b"short"


async def test_rename_copy_chmod_delete(file_agent: FileAgent) -> None:
    root = file_agent.server_dir
    (root / "a" / "b").mkdir(parents=True)
    (root / "a" / "b" / "f.txt").write_text("payload")
    (root / "a" / "inner").symlink_to("b/f.txt")

    assert (await file_agent.op("copy", {"source": "a", "target": "c"}))[0] == 200
    assert (root / "c" / "b" / "f.txt").read_text() == "payload"
    assert os.readlink(root / "c" / "inner") == "b/f.txt"
    assert (root / "c" / "b" / "f.txt").stat().st_uid == CONTAINER_USER[0]
    status, answer = await file_agent.op("copy", {"source": "a", "target": "c"})
    assert (status, answer["error"]["code"]) == (409, "file_exists")

    assert (await file_agent.op("rename", {"source": "c", "target": "a/moved"}))[0] == 200
    assert (root / "a" / "moved" / "b" / "f.txt").exists()
    assert not (root / "c").exists()

    assert (await file_agent.op("chmod", {"path": "a/b/f.txt", "mode": "4755"}))[0] == 200
    assert stat.S_IMODE((root / "a" / "b" / "f.txt").stat().st_mode) == 0o755  # no setuid
    status, answer = await file_agent.op("chmod", {"path": "a", "mode": "rwx"})
    assert (status, answer["error"]["code"]) == (400, "validation_error")

    status, answer = await file_agent.op("delete", {"path": "a"})
    assert (status, answer["freed_bytes"]) == (200, 14)
    assert list(root.iterdir()) == []
    status, answer = await file_agent.op("delete", {"path": "/"})
    assert (status, answer["error"]["code"]) == (400, "invalid_path")
    assert root.is_dir()


@pytest.mark.parametrize("fmt", ["tar.gz", "zip"])
async def test_compress_and_decompress(file_agent: FileAgent, fmt: str) -> None:
    root = file_agent.server_dir
    (root / "world" / "region").mkdir(parents=True)
    (root / "world" / "region" / "r.0.0").write_bytes(os.urandom(200_000))
    (root / "world" / "level.dat").write_text("level")
    (root / "config.yml").write_text("a: 1\n")

    status, answer = await file_agent.op(
        "compress", {"paths": ["world", "config.yml"], "target": f"backup.{fmt}", "format": fmt}
    )
    assert status == 200, answer
    archive = root / f"backup.{fmt}"
    assert answer["size"] == archive.stat().st_size
    if fmt == "zip":
        with zipfile.ZipFile(archive) as opened_zip:
            assert "world/region/r.0.0" in opened_zip.namelist()
    else:
        with tarfile.open(archive) as opened_tar:
            assert "world/region/r.0.0" in opened_tar.getnames()

    status, answer = await file_agent.op(
        "decompress", {"path": f"backup.{fmt}", "destination": "restored"}
    )
    assert status == 200, answer
    assert (answer["files"], answer["skipped"]) == (3, [])
    for name in ("world/region/r.0.0", "world/level.dat", "config.yml"):
        assert (root / "restored" / name).read_bytes() == (root / name).read_bytes()
        assert (root / "restored" / name).stat().st_uid == CONTAINER_USER[0]


async def _interrupted_put(file_agent: FileAgent, path: str, sent: bytes, total: int) -> None:
    """A PUT that announces `total` bytes, sends only `sent`, and drops the connection."""
    host, port = file_agent.base.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    token = file_agent.token("file-upload", path=path)
    writer.write(
        f"PUT /api/servers/{file_agent.server_id}/files/upload?path={path}&token={token} "
        f"HTTP/1.1\r\nHost: {host}\r\nContent-Length: {total}\r\n\r\n".encode()
        + sent
    )
    await writer.drain()
    writer.close()
    await writer.wait_closed()
    del reader


async def test_an_interrupted_upload_resumes_where_its_bytes_end(file_agent: FileAgent) -> None:
    data = os.urandom(5 * 1024 * 1024)
    await _interrupted_put(file_agent, "big.bin", data[: 3 * 1024 * 1024 + 5], len(data))
    headers = file_agent.auth("file-upload", path="big.bin")
    url, query = file_agent.url("upload"), {"path": "big.bin"}
    stored = -1
    for _ in range(100):  # the agent writes what it received after the peer is gone
        async with file_agent.http.head(url, params=query, headers=headers) as response:
            now = int(response.headers.get("Upload-Offset", "-1"))
        if now == stored and now > 0:
            break
        stored = now
        await asyncio.sleep(0.05)
    assert 0 < stored < len(data)

    wrong = {**query, "offset": str(stored + 1)}
    async with file_agent.http.patch(url, params=wrong, data=b"x", headers=headers) as response:
        answer = await response.json()
        assert (response.status, answer["error"]["details"]["size"]) == (409, stored)
    resume = {**query, "offset": str(stored)}
    async with file_agent.http.patch(
        url, params=resume, data=streamed(data[stored:]), headers=headers
    ) as response:
        assert (response.status, (await response.json())["size"]) == (200, len(data))
    got = await file_agent.download("big.bin")
    assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()


async def test_tokens_are_checked_for_scope_server_and_write_permission(
    file_agent: FileAgent,
) -> None:
    (file_agent.server_dir / "f.txt").write_text("keep")
    read_only = file_agent.auth("file-upload", ["file.read"], path="f.txt")
    url = file_agent.url("upload")
    async with file_agent.http.put(
        url, params={"path": "f.txt"}, data=b"overwritten", headers=read_only
    ) as response:
        assert (response.status, (await response.json())["error"]["code"]) == (403, "read_only")
    async with file_agent.http.post(
        file_agent.url("delete"),
        json={"path": "f.txt"},
        headers=file_agent.auth("file-relay", ["file.read"]),
    ) as response:
        assert (response.status, (await response.json())["error"]["code"]) == (403, "read_only")
    assert (file_agent.server_dir / "f.txt").read_text() == "keep"
    # A read-only grant still reads.
    async with file_agent.http.get(
        file_agent.url("list"), headers=file_agent.auth("file-relay", ["file.read"])
    ) as response:
        assert response.status == 200

    download_scope = file_agent.auth("file-download", path="f.txt")
    async with file_agent.http.put(
        url, params={"path": "f.txt"}, data=b"x", headers=download_scope
    ) as response:
        assert (response.status, (await response.json())["error"]["code"]) == (
            403,
            "wrong_operation",
        )
    other = file_agent.token("file-relay", server_id="another-server")
    async with file_agent.http.get(
        file_agent.url("list"), headers={"Authorization": f"Bearer {other}"}
    ) as response:
        assert (response.status, (await response.json())["error"]["code"]) == (403, "wrong_server")
    async with file_agent.http.get(file_agent.url("list")) as response:
        assert response.status == 401
    async with file_agent.http.get(
        file_agent.url("list", server_id="unknown"),
        headers={"Authorization": f"Bearer {file_agent.token('file-relay', server_id='unknown')}"},
    ) as response:
        assert (response.status, (await response.json())["error"]["code"]) == (
            404,
            "server_not_found",
        )


async def test_no_operation_blocks_the_event_loop(file_agent: FileAgent) -> None:
    root = file_agent.server_dir
    (root / "d").mkdir()
    (root / "d" / "f.txt").write_bytes(b"data" * 1000)
    data = os.urandom(2 * 1024 * 1024)
    with blockbuster_ctx() as detector:
        allow_known_calls(detector)
        assert (await file_agent.get("list", path="/d"))[0] == 200
        assert (await file_agent.get("stat", path="/d/f.txt"))[0] == 200
        assert len(await file_agent.download("/d/f.txt")) == 4000
        assert (await file_agent.put("/d/up.bin", data))[0] == 201
        for name, body in (
            ("mkdir", {"path": "/e"}),
            ("copy", {"source": "/d", "target": "/e/d"}),
            ("rename", {"source": "/e/d", "target": "/e/moved"}),
            ("chmod", {"path": "/e/moved/f.txt", "mode": "0600"}),
            ("compress", {"paths": ["/d"], "target": "/a.zip", "format": "zip"}),
            ("decompress", {"path": "/a.zip", "destination": "/x"}),
            ("delete", {"path": "/e"}),
        ):
            status, answer = await file_agent.op(name, body)
            assert status == 200, (name, answer)
    assert (root / "x" / "d" / "up.bin").read_bytes() == data


@pytest.mark.parametrize(
    ("scope", "signed_path"), [("file-upload", "up.txt"), ("file-download", "up.txt")]
)
async def test_a_transfer_urls_token_does_one_operation_on_one_path(
    file_agent: FileAgent, scope: Scope, signed_path: str
) -> None:
    """A signed URL's token (the kind a tenant holds for 10 minutes) is no general
    grant: no small operation, no listing, no other path, no other transfer."""
    for name in ("up.txt", "other.txt"):
        (file_agent.server_dir / name).write_text("keep")
    token = {"Authorization": f"Bearer {file_agent.token(scope, path=signed_path)}"}
    for name, body in [
        ("delete", {"path": "up.txt"}),
        ("rename", {"source": "up.txt", "target": "moved.txt"}),
        ("chmod", {"path": "up.txt", "mode": 0o777}),
        ("mkdir", {"path": "d"}),
    ]:
        async with file_agent.http.post(file_agent.url(name), json=body, headers=token) as answer:
            assert (answer.status, (await answer.json())["error"]["code"]) == (
                403,
                "wrong_operation",
            ), name
    async with file_agent.http.get(file_agent.url("list"), headers=token) as answer:
        assert answer.status == 403
    own = "upload" if scope == "file-upload" else "download"
    method = "PUT" if own == "upload" else "GET"
    async with file_agent.http.request(
        method, file_agent.url(own), params={"path": "other.txt"}, data=b"x", headers=token
    ) as answer:
        assert (answer.status, (await answer.json())["error"]["code"]) == (403, "wrong_path")
    async with file_agent.http.request(
        method, file_agent.url(own), params={"path": signed_path}, data=b"x", headers=token
    ) as answer:
        assert answer.status in (200, 201)
    assert (file_agent.server_dir / "other.txt").read_text() == "keep"
