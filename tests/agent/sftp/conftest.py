"""Fixtures for the SFTP tests: a fake control plane over real HTTP, the real SFTP
service on 127.0.0.1:0, and the real OpenSSH `sftp` client."""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import asyncssh
import pytest

from agent.controlplane_client import HttpControlPlane
from agent.sftp import SFTPService
from common.login_throttle import DelayCurve, LoginThrottle
from common.subprocesses import spawn
from tests.agent.sftp.controlplane_fake import (
    NODE_SECRET,
    Account,
    FakeControlPlane,
    Server,
    serve,
)

ALICE_PASSWORD = "alice-password-1"
BOB_PASSWORD = "bob-password-22"

requires_sftp_client = pytest.mark.skipif(
    shutil.which("sftp") is None or shutil.which("sshpass") is None,
    reason="needs the OpenSSH sftp client and sshpass (scripts/setup-system.sh)",
)


@dataclass
class World:
    """One running SFTP service with its fake control plane and two accounts."""

    service: SFTPService
    control_plane: FakeControlPlane
    data_dir: Path
    alice_server: str
    bob_server: str
    alice_key: Path

    @property
    def port(self) -> int:
        return self.service.port

    def server_dir(self, server_id: str) -> Path:
        return self.data_dir / "volumes" / server_id

    @staticmethod
    def login(account: str, server_id: str) -> str:
        return f"{account}.{server_id[:8]}"


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


def _user_key(directory: Path) -> tuple[Path, str]:
    key = asyncssh.generate_private_key("ssh-ed25519")
    path = directory / "id_ed25519"
    path.write_bytes(key.export_private_key())
    path.chmod(0o600)
    public = key.export_public_key("openssh").decode().strip()
    return path, public


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    data_dir = tmp_path / "data"
    key_path, public_key = _user_key(tmp_path)
    alice_server, bob_server = str(uuid.uuid4()), str(uuid.uuid4())
    fake = FakeControlPlane(
        accounts={
            "alice": Account("u-alice", ALICE_PASSWORD, keys=[public_key]),
            "bob": Account("u-bob", BOB_PASSWORD),
        },
        servers={alice_server: Server(owner="alice"), bob_server: Server(owner="bob")},
    )
    async with serve(fake):
        control_plane = HttpControlPlane(fake.url, NODE_SECRET)
        service = SFTPService(
            control_plane,
            data_dir=data_dir,
            host="127.0.0.1",
            port=0,
            file_owner=None,
            revalidate_interval=3600,
            # Two free failures, then a wait of 30 s: far longer than any test.
            throttle=LoginThrottle(pair=DelayCurve(free=2, base=30.0, cap=30.0)),
        )
        await service.start()
        for server_id in (alice_server, bob_server):
            (data_dir / "volumes" / server_id).mkdir(parents=True, exist_ok=True)
        try:
            yield World(service, fake, data_dir, alice_server, bob_server, key_path)
        finally:
            await service.stop()
            await control_plane.close()


async def run_sftp(
    port: int,
    username: str,
    commands: str,
    *,
    password: str | None = None,
    key: Path | None = None,
    cwd: Path | None = None,
) -> Result:
    """Run the OpenSSH sftp client in batch mode; commands are one per line."""
    args = [
        "sftp",
        "-P",
        str(port),
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "LogLevel=ERROR",
        "-o",
        "ConnectTimeout=10",
        # Before -b: ssh keeps the first value, and -b would force BatchMode=yes,
        # which forbids the password prompt sshpass answers.
        "-o",
        "BatchMode=no",
        "-o",
        "NumberOfPasswordPrompts=1",
    ]
    if key is not None:
        args += ["-i", str(key), "-o", "IdentitiesOnly=yes"]
        args += ["-o", "PreferredAuthentications=publickey"]
    else:
        args += ["-o", "PreferredAuthentications=password,keyboard-interactive"]
        args += ["-o", "PubkeyAuthentication=no"]
    args += ["-b", "-", f"{username}@127.0.0.1"]
    if password is not None:
        args = ["sshpass", "-p", password, *args]
    env = {k: v for k, v in os.environ.items() if k != "SSH_AUTH_SOCK"}
    proc = await spawn(
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=cwd,
        env=env,
    )
    out, err = await asyncio.wait_for(proc.communicate(commands.encode()), timeout=60)
    assert proc.returncode is not None
    return Result(proc.returncode, out.decode(errors="replace"), err.decode(errors="replace"))


async def alice_sftp(world: World, commands: str, *, cwd: Path | None = None) -> Result:
    return await run_sftp(
        world.port,
        world.login("alice", world.alice_server),
        commands,
        password=ALICE_PASSWORD,
        cwd=cwd,
    )


async def asyncssh_sftp(
    world: World, account: str = "alice", password: str = ALICE_PASSWORD, *, version: int = 3
) -> tuple[asyncssh.SSHClientConnection, asyncssh.SFTPClient]:
    """An asyncssh SFTP client: it sends paths exactly as given (no client-side cleanup)."""
    server = world.alice_server if account == "alice" else world.bob_server
    conn = await password_login(world.port, world.login(account, server), password)
    return conn, await conn.start_sftp_client(sftp_version=version)


async def password_login(port: int, username: str, password: str) -> asyncssh.SSHClientConnection:
    """An asyncssh connection to 127.0.0.1:`port` by password only (no keys, no agent,
    any host key)."""
    return await asyncssh.connect(
        "127.0.0.1",
        port,
        username=username,
        password=password,
        known_hosts=None,
        client_keys=None,
        agent_path=None,
    )
