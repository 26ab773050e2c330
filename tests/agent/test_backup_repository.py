"""The restic repository wrapper against real restic: a repository on a local path
and one on a real OpenSSH server (restic's `sftp:` backend, sshd on loopback)."""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import tarfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agent.backups.placing import move_into
from agent.backups.restic import RepositoryTurns, ResticError, ResticRepository
from tests.sshd_support import OpenSshServer, running_openssh

PASSWORD = "correct horse battery staple 42"


def _checksums(root: Path) -> dict[str, str]:
    found: dict[str, str] = {}
    for path in sorted(root.rglob("*")):
        if path.is_file():
            found[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def _write_tree(root: Path) -> None:
    (root / "world" / "region").mkdir(parents=True)
    (root / "world" / "level.dat").write_bytes(os.urandom(70_000))
    (root / "world" / "region" / "r.0.0.mca").write_bytes(os.urandom(300_000))
    (root / "server.properties").write_text("motd=hello\n")
    (root / "logs").mkdir()
    (root / "logs" / "latest.log").write_text("noise\n")


async def _round_trip(repository: ResticRepository, tmp_path: Path) -> None:
    volume = tmp_path / "volume"
    await asyncio.to_thread(_write_tree, volume)
    before = await asyncio.to_thread(_checksums, volume)
    summary = await repository.backup(
        volume, tags=["encedeus.backup=b1"], excludes=[f"{volume}/logs"]
    )
    assert summary.files == 3
    assert "encedeus.backup=b1" in summary.snapshot.tags
    # Change everything, then restore through a staging directory, wiping first.
    (volume / "world" / "level.dat").write_bytes(b"corrupted")
    (volume / "new-file").write_text("made after the backup")
    staging = tmp_path / "staging"
    staging.mkdir()
    await repository.restore(summary.snapshot.id, staging)
    await asyncio.to_thread(move_into, staging, volume, True)
    after = await asyncio.to_thread(_checksums, volume)
    expected = {k: v for k, v in before.items() if not k.startswith("logs/")}
    assert after == expected


async def test_local_repository_backs_up_and_restores_byte_for_byte(tmp_path: Path) -> None:
    repository = ResticRepository.of_node(tmp_path / "agent", "node-1")
    await _round_trip(repository, tmp_path)
    # The node's own password was made on first use, readable by its owner only.
    key = tmp_path / "agent" / "backups.key"
    assert key.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "agent" / "backups" / "config").exists()


async def test_dump_is_the_snapshot_as_tar(tmp_path: Path) -> None:
    repository = ResticRepository.of_node(tmp_path / "agent", "node-1")
    volume = tmp_path / "volume"
    await asyncio.to_thread(_write_tree, volume)
    summary = await repository.backup(volume, tags=[], excludes=[])
    data = b"".join([chunk async for chunk in repository.dump(summary.snapshot.id)])
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        member = archive.extractfile("world/region/r.0.0.mca")
        assert member is not None
        assert member.read() == (volume / "world" / "region" / "r.0.0.mca").read_bytes()
    with pytest.raises(ResticError):
        _ = [chunk async for chunk in repository.dump("0" * 64)]


async def test_forget_removes_the_snapshot(tmp_path: Path) -> None:
    repository = ResticRepository.of_node(tmp_path / "agent", "node-1")
    volume = tmp_path / "volume"
    await asyncio.to_thread(_write_tree, volume)
    summary = await repository.backup(volume, tags=[], excludes=[])
    await repository.forget(summary.snapshot.id)
    with pytest.raises(ResticError):
        await repository.snapshot(summary.snapshot.id)


@pytest.fixture
async def sshd(tmp_path: Path) -> AsyncIterator[OpenSshServer]:
    async with running_openssh(tmp_path / "sshd") as server:
        yield server


async def test_sftp_repository_on_openssh(tmp_path: Path, sshd: OpenSshServer) -> None:
    url = f"sftp:root@127.0.0.1:{tmp_path / 'remote-repo'}"
    repository = ResticRepository(
        url,
        identity=ResticRepository.identity_of(url),
        cache_dir=tmp_path / "cache",
        password=PASSWORD,
        options={"sftp.command": sshd.ssh_command},
    )
    await _round_trip(repository, tmp_path)
    # The repository was made on the SSH server, through SFTP.
    assert (tmp_path / "remote-repo" / "config").exists()
    # A second client of the same repository (another node) sees the snapshot.
    other = ResticRepository(
        url,
        identity=ResticRepository.identity_of(url),
        cache_dir=tmp_path / "cache2",
        password=PASSWORD,
        options={"sftp.command": sshd.ssh_command},
    )
    assert other.identity == repository.identity == f"restic:{url}"
    out = await other.run("snapshots", "--json")
    assert b'"encedeus.backup=b1"' in out


async def test_secrets_stay_out_of_argv_and_errors(tmp_path: Path) -> None:
    """The password and the URL's credentials reach restic only through its
    environment; restic's messages come back without them."""
    record = tmp_path / "record"
    fake = tmp_path / "fake-restic"
    fake.write_text(
        "#!/bin/sh\n"
        f'printf "%s\\n" "$@" > {record}.argv\n'
        f"env > {record}.env\n"
        'echo "Fatal: cannot open $RESTIC_REPOSITORY with $RESTIC_PASSWORD" >&2\n'
        "exit 1\n"
    )
    fake.chmod(0o755)
    url = "rest:https://backup:s3cr3t-in-url@127.0.0.1:8000/repo"
    repository = ResticRepository(
        url,
        identity=ResticRepository.identity_of(url),
        cache_dir=tmp_path / "cache",
        password=PASSWORD,
        binary=str(fake),
    )
    assert "s3cr3t" not in repository.identity
    with pytest.raises(ResticError) as failure:
        await repository.run("snapshots")
    argv = (tmp_path / "record.argv").read_text()
    assert PASSWORD not in argv
    assert "s3cr3t" not in argv
    env = (tmp_path / "record.env").read_text()
    assert f"RESTIC_PASSWORD={PASSWORD}" in env
    assert PASSWORD not in str(failure.value)
    assert "s3cr3t" not in str(failure.value)


@pytest.mark.parametrize(
    ("url", "secret"),
    [
        ("rest:https://backup:s3cr3t@127.0.0.1:8000/repo", "s3cr3t"),
        ("rest:https://backup:s3@cr3t@127.0.0.1:8000/repo", "cr3t"),  # Go takes the last @
        ("rest:https://backup:s3:cr@3t@127.0.0.1/", "3t"),
        ("s3:https://key:s3cr3t@127.0.0.1:9000/bucket/repo", "s3cr3t"),
        ("rest:https://backup:p%40ss@127.0.0.1/", "p%40ss"),
    ],
)
def test_a_repository_identity_holds_no_password(url: str, secret: str) -> None:
    """The identity is shown to every account (a backup's `repository`) and signed
    into download tokens: none of the URL's password, whatever characters it has."""
    identity = ResticRepository.identity_of(url)
    assert secret not in identity
    assert identity.endswith("127.0.0.1" + url.split("127.0.0.1", 1)[1])


def test_restore_never_writes_through_links_the_volume_holds(tmp_path: Path) -> None:
    """A container may leave `world -> /somewhere` in its volume: restoring a backup
    that holds `world/` replaces the link, and nothing is written where it pointed."""
    outside, volume, staging = tmp_path / "outside", tmp_path / "volume", tmp_path / "staging"
    for directory in (outside, volume, staging / "world"):
        directory.mkdir(parents=True)
    (outside / "precious").write_text("host file")
    (volume / "world").symlink_to(outside)
    (volume / "logs").symlink_to(outside / "precious")
    (staging / "world" / "precious").write_text("from the backup")
    (staging / "logs").write_text("log")
    move_into(staging, volume, wipe=False)
    assert (outside / "precious").read_text() == "host file"
    assert not (volume / "world").is_symlink()
    assert (volume / "world" / "precious").read_text() == "from the backup"
    assert not (volume / "logs").is_symlink()
    assert sorted(p.name for p in outside.iterdir()) == ["precious"]


async def test_forget_waits_for_the_commands_using_the_repository() -> None:
    """restic 0.14 cannot wait for a lock: a prune started while a backup holds one
    fails. The agent makes it wait its turn, and new commands wait behind it."""
    turns = RepositoryTurns()
    order: list[str] = []
    backup_may_end = asyncio.Event()

    async def backup() -> None:
        async with turns.shared():
            order.append("backup")
            await backup_may_end.wait()
        order.append("backup done")

    async def forget() -> None:
        async with turns.exclusive():
            order.append("forget")

    async def later_backup() -> None:
        async with turns.shared():
            order.append("later backup")

    running = asyncio.create_task(backup())
    await asyncio.sleep(0)
    forgetting = asyncio.create_task(forget())
    await asyncio.sleep(0)
    later = asyncio.create_task(later_backup())
    await asyncio.sleep(0.01)
    assert order == ["backup"]
    backup_may_end.set()
    await asyncio.gather(running, forgetting, later)
    assert order == ["backup", "backup done", "forget", "later backup"]
