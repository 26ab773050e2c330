"""Backups of a running server on the real dockerd, with real restic: console
commands around the snapshot, restore (the server stopped and started again), the
signed `.tar.gz` download, delete."""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import tarfile
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import grpc.aio
import pytest

from agent.backups import download
from agent.daemon import RunningAgent
from common.tokens import sign_server_token
from protos import agent_pb2 as pb
from protos import agent_pb2_grpc as pb_grpc
from tests.agent.conftest import AUTH, ECHO, SECRET, agent_in_background, make_config, spec
from tests.sshd_support import running_openssh

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("no_blocking_calls")]

# Writes its world once (a restart must not), then says ready and echoes stdin.
SERVER = (
    "[ -f /data/motd ] || { mkdir -p /data/world;"
    " head -c 200000 /dev/urandom > /data/world/level.dat; echo v1 > /data/motd;"
    " mkdir /data/cache; echo junk > /data/cache/tmp; }; echo ready; " + ECHO
)


def _checksums(root: Path) -> dict[str, tuple[str, int]]:
    found: dict[str, tuple[str, int]] = {}
    for path in sorted(root.rglob("*")):
        if path.is_file():
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            found[str(path.relative_to(root))] = (digest, path.stat().st_uid)
    return found


def _files_of_tar_gz(body: bytes) -> dict[str, bytes]:
    found: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as archive:
        for member in archive.getmembers():
            content = archive.extractfile(member) if member.isfile() else None
            if content is not None:
                found[member.name] = content.read()
    return found


def _tamper(volume: Path, extra: str) -> None:
    (volume / "world" / "level.dat").write_bytes(b"griefed")
    (volume / "extra").write_text(extra)


async def _log_count(stub: pb_grpc.AgentAsyncStub, server: str, text: str) -> int:
    lines = stub.GetLogs(pb.GetLogsRequest(id=server, tail=0), metadata=AUTH)
    return sum([1 async for line in lines if line.text == text])


async def _wait_log(stub: pb_grpc.AgentAsyncStub, server: str, text: str, count: int = 1) -> None:
    async with asyncio.timeout(20):
        while await _log_count(stub, server, text) < count:
            await asyncio.sleep(0.1)


def _download_token(agent: RunningAgent, server: str, snapshot: str, repository: str) -> str:
    return sign_server_token(
        SECRET,
        node_id=agent.identity.node_id,
        user_id="user-1",
        server_id=server,
        permissions=["backup.read"],
        scope="backup-download",
        details={"snapshot": snapshot, "repository": repository, "filename": "app backup"},
    )


async def _download(agent: RunningAgent, server: str, snapshot: str, token: str) -> Any:
    url = f"http://127.0.0.1:{agent.http.port}/api/servers/{server}/backups/{snapshot}/download"
    async with (
        aiohttp.ClientSession(auto_decompress=False) as http,
        http.get(url, params={"token": token}) as response,
    ):
        return response.status, dict(response.headers), await response.read()


async def test_backup_restore_download_delete(
    agent: RunningAgent, stub: pb_grpc.AgentAsyncStub
) -> None:
    server = spec(SERVER, stop=pb.StopPolicy(command="stop"))
    await stub.CreateServer(pb.CreateServerRequest(spec=server, start=True), metadata=AUTH)
    await _wait_log(stub, server.id, "ready")
    volume = Path(agent.config.data_dir) / "volumes" / server.id
    original = await asyncio.to_thread(_checksums, volume)

    backup = await stub.CreateBackup(
        pb.CreateBackupRequest(
            server_id=server.id,
            backup_id="b-1",
            ignore=["/cache"],
            before_commands=["save-off", "save-all"],
            after_commands=["save-on"],
        ),
        metadata=AUTH,
    )
    assert backup.repository == f"node:{agent.identity.node_id}"
    assert backup.checksum.startswith("sha256:")
    assert backup.files == 2
    for line in ("got save-off", "got save-all", "got save-on"):
        await _wait_log(stub, server.id, line)

    # The world changes, a file appears; a restore that wipes brings back the backup.
    await asyncio.to_thread(_tamper, volume, "new")
    restored = await stub.RestoreBackup(
        pb.RestoreBackupRequest(
            server_id=server.id, snapshot_id=backup.snapshot_id, repository=backup.repository,
            wipe=True,
        ),
        metadata=AUTH,
    )  # fmt: skip
    assert restored.restarted
    after = await asyncio.to_thread(_checksums, volume)
    assert after == {k: v for k, v in original.items() if not k.startswith("cache/")}
    await _wait_log(stub, server.id, "ready", count=2)  # running again, same world

    # Without wipe, names the backup lacks stay; those it has are replaced.
    await asyncio.to_thread(_tamper, volume, "kept")
    await stub.RestoreBackup(
        pb.RestoreBackupRequest(
            server_id=server.id, snapshot_id=backup.snapshot_id, repository=backup.repository
        ),
        metadata=AUTH,
    )
    after = await asyncio.to_thread(_checksums, volume)
    assert after["world/level.dat"] == original["world/level.dat"]
    assert after["extra"][0] == hashlib.sha256(b"kept").hexdigest()

    # The download: the snapshot as a .tar.gz, byte for byte.
    token = _download_token(agent, server.id, backup.snapshot_id, backup.repository)
    status, headers, body = await _download(agent, server.id, backup.snapshot_id, token)
    assert status == 200
    assert headers["Content-Type"] == "application/gzip"
    assert 'filename="app_backup.tar.gz"' in headers["Content-Disposition"]
    files = await asyncio.to_thread(_files_of_tar_gz, body)
    assert set(files) == {"world/level.dat", "motd"}
    assert hashlib.sha256(files["world/level.dat"]).hexdigest() == original["world/level.dat"][0]

    # Delete: the snapshot is gone from the repository.
    await stub.DeleteBackup(
        pb.DeleteBackupRequest(snapshot_id=backup.snapshot_id, repository=backup.repository),
        metadata=AUTH,
    )
    status, _, body = await _download(agent, server.id, backup.snapshot_id, token)
    assert status == 404
    assert b"backup_not_found" in body


async def _delete_when_free(stub: pb_grpc.AgentAsyncStub, backup: pb.BackupResult) -> None:
    """DeleteBackup, tried again while restic reports the repository locked."""
    request = pb.DeleteBackupRequest(snapshot_id=backup.snapshot_id, repository=backup.repository)
    async with asyncio.timeout(30):
        while True:
            try:
                await stub.DeleteBackup(request, metadata=AUTH)
                return
            except grpc.aio.AioRpcError as exc:
                details = exc.details() or ""
            assert "locked" in details, details
            await asyncio.sleep(0.5)


async def test_a_stalled_download_holds_up_no_other_accounts_backup(
    agent: RunningAgent, stub: pb_grpc.AgentAsyncStub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client that starts a download and stops reading, its connection open, makes no
    other backup on the node wait (a forget meanwhile fails at once and is tried
    again, rather than queueing every later backup behind it), and is cut off once it
    has taken nothing for STALL_SECONDS, which ends restic's lock."""
    monkeypatch.setattr(download, "STALL_SECONDS", 2.0)
    big = spec("head -c 24000000 /dev/urandom > /data/big; echo ready; " + ECHO)
    other = spec("echo theirs > /data/theirs; echo ready; " + ECHO)
    for server in (big, other):
        await stub.CreateServer(pb.CreateServerRequest(spec=server, start=True), metadata=AUTH)
        await _wait_log(stub, server.id, "ready")
    backup = await stub.CreateBackup(
        pb.CreateBackupRequest(server_id=big.id, backup_id="b-big"), metadata=AUTH
    )
    token = _download_token(agent, big.id, backup.snapshot_id, backup.repository)
    url = (
        f"http://127.0.0.1:{agent.http.port}/api/servers/{big.id}/backups/"
        f"{backup.snapshot_id}/download"
    )
    async with (
        aiohttp.ClientSession(auto_decompress=False) as http,
        http.get(url, params={"token": token}) as response,
    ):
        assert response.status == 200
        assert await response.content.readexactly(2) == b"\x1f\x8b"  # then reads no more
        deleting = asyncio.ensure_future(
            stub.DeleteBackup(
                pb.DeleteBackupRequest(
                    snapshot_id=backup.snapshot_id, repository=backup.repository
                ),
                metadata=AUTH,
            )
        )
        async with asyncio.timeout(30):
            theirs = await stub.CreateBackup(
                pb.CreateBackupRequest(server_id=other.id, backup_id="b-theirs"), metadata=AUTH
            )
        assert theirs.files == 1
        try:
            await deleting  # refused (restic's lock), or done once the download was cut off
        except grpc.aio.AioRpcError:
            await _delete_when_free(stub, backup)


async def test_download_token_is_bound_to_its_backup(
    agent: RunningAgent, stub: pb_grpc.AgentAsyncStub
) -> None:
    server = spec("echo ready; " + ECHO)
    await stub.CreateServer(pb.CreateServerRequest(spec=server, start=False), metadata=AUTH)
    with pytest.raises(grpc.aio.AioRpcError) as empty:
        await stub.CreateBackup(
            pb.CreateBackupRequest(server_id=server.id, backup_id="b-0"), metadata=AUTH
        )
    assert empty.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "nothing to back up" in (empty.value.details() or "")
    volume = Path(agent.config.data_dir) / "volumes" / server.id
    await asyncio.to_thread((volume / "file").write_text, "content")
    backup = await stub.CreateBackup(
        pb.CreateBackupRequest(server_id=server.id, backup_id="b-2"), metadata=AUTH
    )
    token = _download_token(agent, server.id, "f" * 64, backup.repository)
    status, _, body = await _download(agent, server.id, backup.snapshot_id, token)
    assert (status, b"wrong_backup" in body) == (403, True)
    other_scope = sign_server_token(
        SECRET,
        node_id=agent.identity.node_id,
        user_id="user-1",
        server_id=server.id,
        permissions=["*"],
        scope="file-download",
        details={"snapshot": backup.snapshot_id, "path": "/"},
    )
    status, _, _ = await _download(agent, server.id, backup.snapshot_id, other_scope)
    assert status == 401
    # A snapshot of another repository is refused, not looked for.
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.RestoreBackup(
            pb.RestoreBackupRequest(
                server_id=server.id, snapshot_id=backup.snapshot_id, repository="node:elsewhere"
            ),
            metadata=AUTH,
        )
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_a_fleet_repository_on_sftp_is_shared_by_the_agents(tmp_path: Path) -> None:
    """Two agents configured with one `sftp:` repository on a real OpenSSH server: a
    backup one takes is restored into a server of the other."""
    async with running_openssh(tmp_path / "sshd") as sshd:
        backups = {
            "repository": f"sftp:root@127.0.0.1:{tmp_path / 'fleet-repo'}",
            "password": "fleet password 1",
            "options": {"sftp.command": sshd.ssh_command},
        }
        configs = [
            make_config(tmp_path / name, f"node-{name}-{uuid.uuid4().hex[:6]}", backups=backups)
            for name in ("a", "b")
        ]
        async with agent_in_background(configs[0]) as a, agent_in_background(configs[1]) as b:
            source, target = spec("sleep 60"), spec("sleep 60")
            source.files.append(pb.InputFile(path="world/level.dat", content=b"the world"))
            async with (
                grpc.aio.insecure_channel(f"127.0.0.1:{a.grpc.port}") as to_a,
                grpc.aio.insecure_channel(f"127.0.0.1:{b.grpc.port}") as to_b,
            ):
                stub_a, stub_b = pb_grpc.AgentStub(to_a), pb_grpc.AgentStub(to_b)
                await stub_a.CreateServer(pb.CreateServerRequest(spec=source), metadata=AUTH)
                await stub_b.CreateServer(pb.CreateServerRequest(spec=target), metadata=AUTH)
                backup = await stub_a.CreateBackup(
                    pb.CreateBackupRequest(server_id=source.id, backup_id="b-fleet"),
                    metadata=AUTH,
                )
                assert backup.repository == f"restic:{backups['repository']}"
                restored = await stub_b.RestoreBackup(
                    pb.RestoreBackupRequest(
                        server_id=target.id,
                        snapshot_id=backup.snapshot_id,
                        repository=backup.repository,
                    ),
                    metadata=AUTH,
                )
            assert not restored.restarted  # it was not running
            level = Path(b.config.data_dir) / "volumes" / target.id / "world" / "level.dat"
            assert await asyncio.to_thread(level.read_bytes) == b"the world"
        assert await asyncio.to_thread((tmp_path / "fleet-repo" / "config").exists)


@pytest.mark.skipif(os.geteuid() != 0, reason="loop mounts need root")
async def test_restore_into_a_volume_with_a_disk_limit_keeps_owners(
    agent: RunningAgent, stub: pb_grpc.AgentAsyncStub
) -> None:
    """A volume with a disk limit is a filesystem of its own: the staged files are
    copied in (not renamed) and keep their owners."""
    server = spec(
        "mkdir -p /data/world && echo saved > /data/world/level.dat && echo ready; " + ECHO,
        stop=pb.StopPolicy(command="stop"),
    )
    server.volume_id = f"v{server.id}"
    server.resources.disk_bytes = 32 << 20
    await stub.CreateServer(pb.CreateServerRequest(spec=server, start=True), metadata=AUTH)
    await _wait_log(stub, server.id, "ready")
    volume = Path(agent.config.data_dir) / "volumes" / server.volume_id
    original = await asyncio.to_thread(_checksums, volume)
    backup = await stub.CreateBackup(
        pb.CreateBackupRequest(server_id=server.id, backup_id="b-img"), metadata=AUTH
    )
    assert backup.files == 1
    await asyncio.to_thread(_tamper, volume, "new")
    await stub.RestoreBackup(
        pb.RestoreBackupRequest(
            server_id=server.id, snapshot_id=backup.snapshot_id, repository=backup.repository,
            wipe=True,
        ),
        metadata=AUTH,
    )  # fmt: skip
    assert await asyncio.to_thread(_checksums, volume) == original  # contents and owners
    assert original["world/level.dat"][1] == 988  # the container's user, not root
