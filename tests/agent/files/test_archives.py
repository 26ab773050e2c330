"""Hostile archives: zip-slip, absolute names, a symlink then a write through it, a hard
link to /etc/passwd, devices and FIFOs, a zip bomb, too many members. Nothing lands
outside the server directory and the caps stop extraction."""

from __future__ import annotations

import io
import os
import stat
import tarfile
import uuid
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agent.files.archives import ExtractLimits, safe_member_name
from tests.agent.files.conftest import FileAgent, agent_state_files, file_api_alone
from tests.agent.sftp.test_escape import _snapshot, _tree_listing


def _tar(members: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buffer.getvalue()


def _member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode = kind, link, 0o644
    return info


def test_member_names_that_leave_are_refused() -> None:
    for name in ("../evil", "a/../../evil", "/etc/cron.d/x", "C:/x", "a\\..\\..\\x", "a\0b", ".."):
        assert safe_member_name(name) is None, name
    assert safe_member_name("./a//b/") == "a/b"


async def test_tar_attacks_write_nothing_outside(file_agent: FileAgent) -> None:
    tag = uuid.uuid4().hex
    escape_name = f"../../escaped-{tag}"
    absolute = f"/tmp/absolute-{tag}"
    fifo, device = _member("fifo", tarfile.FIFOTYPE), _member("disk", tarfile.BLKTYPE)
    device.devmajor, device.devminor = 8, 0
    archive = _tar(
        [
            (_member(escape_name), b"slip\n"),
            (_member(absolute), b"absolute\n"),
            (_member("etc", tarfile.SYMTYPE, "/etc"), None),
            (_member("etc/passwd-evil"), b"through the link\n"),
            (_member("passwd", tarfile.LNKTYPE, "/etc/passwd"), None),
            (_member("passwd"), b"written through the hard link\n"),
            (fifo, None),
            (device, None),
            (_member("fine/ok.txt"), b"ok\n"),
        ]
    )
    root = file_agent.server_dir
    (root / "evil.tgz").write_bytes(archive)
    sentinels = [Path("/etc/passwd"), Path("/etc/shadow")]
    before = _snapshot(sentinels)
    listing = _tree_listing(file_agent.data_dir.parent)

    status, answer = await file_agent.op("decompress", {"path": "evil.tgz", "destination": "x"})

    assert status == 200, answer
    skipped = {s["name"] for s in answer["skipped"]}
    assert {escape_name, absolute, "etc", "passwd", "fifo", "disk"} <= skipped
    assert (root / "x" / "fine" / "ok.txt").read_text() == "ok\n"
    # The regular member named like the skipped link is written as a plain file.
    assert not (root / "x" / "etc").is_symlink()
    assert (root / "x" / "passwd").stat().st_nlink == 1
    assert _snapshot(sentinels) == before
    assert not Path(absolute).exists()
    new = (
        _tree_listing(file_agent.data_dir.parent) - listing - agent_state_files(file_agent.data_dir)
    )
    assert all(p.startswith(str(root)) for p in new), new
    assert not any(stat.S_ISFIFO(p.lstat().st_mode) for p in (root / "x").rglob("*"))


async def test_zip_slip_and_links_in_a_zip(file_agent: FileAgent) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("../../zip-slip.txt", b"slip")
        archive.writestr("/abs.txt", b"abs")
        link = zipfile.ZipInfo("link")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(link, b"/etc")
        archive.writestr("link/hostname", b"through")
        archive.writestr("good.txt", b"good")
    root = file_agent.server_dir
    (root / "evil.zip").write_bytes(buffer.getvalue())
    status, answer = await file_agent.op("decompress", {"path": "evil.zip", "destination": "/"})
    assert status == 200, answer
    assert {"../../zip-slip.txt", "/abs.txt", "link"} <= {s["name"] for s in answer["skipped"]}
    assert (root / "good.txt").read_bytes() == b"good", answer
    assert (root / "link").is_dir()  # made as a directory for link/hostname, not a link
    assert not (file_agent.data_dir / "zip-slip.txt").exists()
    assert not Path("/abs.txt").exists()


async def test_a_zip_bomb_stops_at_the_ratio_cap(file_agent: FileAgent) -> None:
    buffer = io.BytesIO()
    with (
        zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive,
        archive.open("zeros", "w") as member,
    ):
        for _ in range(64):
            member.write(bytes(1024 * 1024))
    size = len(buffer.getvalue())
    (file_agent.server_dir / "bomb.zip").write_bytes(buffer.getvalue())
    status, answer = await file_agent.op("decompress", {"path": "bomb.zip", "destination": "b"})
    assert (status, answer["error"]["code"]) == (422, "archive_ratio")
    written = (file_agent.server_dir / "b" / "zeros").stat().st_size
    assert written <= ExtractLimits().max_ratio * size + 1024 * 1024


@pytest.fixture
async def capped_files(tmp_path: Path) -> AsyncIterator[FileAgent]:
    """The file API alone on a real HTTP port, with small caps and a 1 MiB disk limit."""
    async with file_api_alone(
        tmp_path,
        disk_limit_of=lambda _server_id: 1024 * 1024,
        extract_limits=ExtractLimits(max_entries=20, max_bytes=10 * 1024 * 1024),
    ) as files:
        yield files


async def test_too_many_members_and_the_disk_limit(capped_files: FileAgent) -> None:
    many = _tar([(_member(f"f{i}"), b"x") for i in range(50)])
    (capped_files.server_dir / "many.tgz").write_bytes(many)
    status, answer = await capped_files.op("decompress", {"path": "many.tgz", "destination": "m"})
    assert (status, answer["error"]["code"]) == (422, "too_many_entries")
    assert len(os.listdir(capped_files.server_dir / "m")) <= 20

    for _ in range(3):  # a PUT that replaces a file gives its old bytes back first
        status, _answer = await capped_files.put("again.bin", os.urandom(700 * 1024))
        assert status == 201
    status, answer = await capped_files.put("big.bin", os.urandom(2 * 1024 * 1024))
    assert (status, answer["error"]["code"]) == (507, "disk_limit_reached")
    assert (capped_files.server_dir / "big.bin").stat().st_size <= 1024 * 1024
