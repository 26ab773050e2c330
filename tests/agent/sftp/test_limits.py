"""The disk limit and the ownership of created files."""

from __future__ import annotations

import os
from pathlib import Path

import asyncssh
import pytest

from agent.controlplane_client import HttpControlPlane
from agent.sftp import SFTPService
from tests.agent.sftp.conftest import (
    ALICE_PASSWORD,
    World,
    alice_sftp,
    asyncssh_sftp,
    password_login,
)
from tests.agent.sftp.controlplane_fake import NODE_SECRET


async def test_writes_stop_at_the_disk_limit(world: World, tmp_path: Path) -> None:
    world.control_plane.servers[world.alice_server].disk_limit_bytes = 1024 * 1024
    root = world.server_dir(world.alice_server)
    (root / "existing.bin").write_bytes(b"x" * 300_000)
    (tmp_path / "small.bin").write_bytes(os.urandom(500_000))
    (tmp_path / "big.bin").write_bytes(os.urandom(400_000))

    result = await alice_sftp(world, "put small.bin\n-put big.bin\ndf\n", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (root / "small.bin").stat().st_size == 500_000
    assert (root / "big.bin").stat().st_size < 400_000  # refused once past the limit
    assert "big.bin" in result.stderr
    # df shows the limit as the size of the disk
    assert " 1024 " in result.stdout

    # Removing files frees room again.
    result = await alice_sftp(world, "rm big.bin\nrm existing.bin\nput big.bin\n", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (root / "big.bin").stat().st_size == 400_000


async def test_truncate_up_counts_against_the_limit(world: World) -> None:
    world.control_plane.servers[world.alice_server].disk_limit_bytes = 1000
    conn, sftp = await asyncssh_sftp(world)
    async with conn:
        async with sftp.open("f", "wb") as f:
            await f.write(b"a" * 900)
        with pytest.raises(asyncssh.SFTPError):
            await sftp.truncate("f", 5000)
        await sftp.truncate("f", 10)
        async with sftp.open("g", "wb") as f:
            await f.write(b"b" * 900)


@pytest.mark.parametrize("per_server", [False, True])
async def test_created_files_belong_to_the_container_user(world: World, per_server: bool) -> None:
    if os.geteuid() != 0:
        pytest.skip("chown needs root")
    control_plane = HttpControlPlane(world.control_plane.url, NODE_SECRET)
    owners = {world.alice_server: (1234, 2345)}
    service = SFTPService(
        control_plane,
        data_dir=world.data_dir,
        host="127.0.0.1",
        port=0,
        file_owner=None if per_server else (1234, 2345),
        # The agent's way: each server's own container user (root for some).
        file_owner_of=owners.get if per_server else None,
        revalidate_interval=3600,
    )
    await service.start()
    try:
        async with await password_login(
            service.port, world.login("alice", world.alice_server), ALICE_PASSWORD
        ) as conn:
            sftp = await conn.start_sftp_client()
            await sftp.mkdir("d")
            async with sftp.open("d/f", "wb") as f:
                await f.write(b"data")
            await sftp.symlink("d/f", "l")
    finally:
        await service.stop()
        await control_plane.close()
    root = world.server_dir(world.alice_server)
    for path in (root / "d", root / "d" / "f", root / "l"):
        info = path.lstat()
        assert (info.st_uid, info.st_gid) == (1234, 2345), path


@pytest.mark.parametrize(
    ("from_control_plane", "from_agent", "applied"),
    [(0, 0, 0), (5000, 0, 5000), (0, 3000, 3000), (5000, 3000, 3000), (2000, 3000, 2000)],
)
def test_the_tighter_limit_applies(
    tmp_path: Path, from_control_plane: int, from_agent: int, applied: int
) -> None:
    from agent.controlplane_client import SFTPGrant

    service = SFTPService(
        HttpControlPlane("http://127.0.0.1:9", NODE_SECRET),
        data_dir=tmp_path,
        disk_limit_of=lambda server_id: from_agent if server_id == "s-1234567" else 0,
    )
    grant = SFTPGrant("s-1234567", "u", frozenset({"file.read"}), False, from_control_plane)
    assert service._limit(grant) == applied


async def test_appends_count_against_the_limit(world: World) -> None:
    """An append handle writes at the end whatever offset the client names: offset 0
    must not make its writes free."""
    world.control_plane.servers[world.alice_server].disk_limit_bytes = 1000
    conn, sftp = await asyncssh_sftp(world)
    async with conn:
        async with sftp.open("plain", "wb") as f:
            with pytest.raises(asyncssh.SFTPError) as plain:
                await f.write(b"p" * 1200)
        async with sftp.open("log", "ab") as f:
            for _ in range(3):
                await f.write(b"a" * 300, 0)
            with pytest.raises(asyncssh.SFTPError) as appended:
                await f.write(b"a" * 300, 0)
    assert (appended.value.code, appended.value.reason) == (plain.value.code, plain.value.reason)
    assert "disk limit" in plain.value.reason
    assert (world.server_dir(world.alice_server) / "log").stat().st_size == 900
