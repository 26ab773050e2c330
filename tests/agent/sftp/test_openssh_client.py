"""The SFTP service against the real OpenSSH `sftp` client in batch mode."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from tests.agent.conftest import allow_known_calls
from tests.agent.sftp.conftest import (
    ALICE_PASSWORD,
    BOB_PASSWORD,
    World,
    alice_sftp,
    requires_sftp_client,
    run_sftp,
)

pytestmark = requires_sftp_client


async def test_put_get_ls_rename_rm_mkdir_rmdir_chmod_symlink(world: World, tmp_path: Path) -> None:
    local = tmp_path / "local"
    local.mkdir()
    (local / "hello.txt").write_bytes(b"hello sftp\n" * 1000)
    root = world.server_dir(world.alice_server)

    result = await alice_sftp(
        world,
        "\n".join(
            [
                "pwd",
                "mkdir plugins",
                "put hello.txt plugins/hello.txt",
                "ls -l plugins",
                "rename plugins/hello.txt plugins/renamed.txt",
                "chmod 600 plugins/renamed.txt",
                "symlink plugins/renamed.txt link.txt",
                "get link.txt back.txt",
                "mkdir empty",
                "rmdir empty",
                "ls -la",
            ]
        ),
        cwd=local,
    )
    assert result.returncode == 0, result.stderr
    assert "Remote working directory: /" in result.stdout
    assert "hello.txt" in result.stdout
    assert (root / "plugins" / "renamed.txt").read_bytes() == b"hello sftp\n" * 1000
    assert stat.S_IMODE((root / "plugins" / "renamed.txt").stat().st_mode) == 0o600
    assert os.readlink(root / "link.txt") == "plugins/renamed.txt"
    assert (local / "back.txt").read_bytes() == b"hello sftp\n" * 1000
    assert not (root / "empty").exists()

    result = await alice_sftp(world, "rm link.txt\nrm plugins/renamed.txt\nrmdir plugins\n")
    assert result.returncode == 0, result.stderr
    assert list(root.iterdir()) == []


async def test_reput_resumes_a_partial_upload(world: World, tmp_path: Path) -> None:
    payload = os.urandom(3 * 1024 * 1024 + 17)
    (tmp_path / "big.bin").write_bytes(payload)
    remote = world.server_dir(world.alice_server) / "big.bin"
    remote.write_bytes(payload[: 1024 * 1024 + 5])  # an upload cut short

    result = await alice_sftp(world, "reput big.bin big.bin\n", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert remote.read_bytes() == payload


async def test_public_key_login(world: World) -> None:
    (world.server_dir(world.alice_server) / "a.txt").write_text("A")
    result = await run_sftp(
        world.port, world.login("alice", world.alice_server), "ls\n", key=world.alice_key
    )
    assert result.returncode == 0, result.stderr
    assert "a.txt" in result.stdout
    asked = [r for r in world.control_plane.requests if "public_key" in r]
    assert asked
    assert asked[0]["public_key"].startswith("ssh-ed25519 ")


async def test_unregistered_key_is_refused(world: World) -> None:
    result = await run_sftp(
        world.port, world.login("bob", world.bob_server), "ls\n", key=world.alice_key
    )
    assert result.returncode != 0


async def test_wrong_password_is_refused(world: World) -> None:
    result = await run_sftp(
        world.port, world.login("alice", world.alice_server), "ls\n", password="wrong-password"
    )
    assert result.returncode == 5  # sshpass: the password was refused
    assert world.service.sessions == frozenset()


async def test_another_accounts_server_is_refused(world: World) -> None:
    (world.server_dir(world.bob_server) / "secret.txt").write_text("bob's")
    result = await run_sftp(
        world.port, world.login("alice", world.bob_server), "ls\n", password=ALICE_PASSWORD
    )
    assert result.returncode != 0
    assert "secret.txt" not in result.stdout
    # Bob himself gets in, and sees only his own server.
    result = await run_sftp(
        world.port, world.login("bob", world.bob_server), "ls\n", password=BOB_PASSWORD
    )
    assert result.returncode == 0, result.stderr
    assert "secret.txt" in result.stdout


async def test_read_only_grant_refuses_every_change(world: World, tmp_path: Path) -> None:
    world.control_plane.servers[world.bob_server].read_only_users.add("alice")
    root = world.server_dir(world.bob_server)
    (root / "config.yml").write_text("motd: hi\n")
    (root / "dir").mkdir()
    (tmp_path / "up.txt").write_text("x")
    attempts = [
        "put up.txt new.txt",
        "put up.txt config.yml",
        "rm config.yml",
        "mkdir made",
        "rmdir dir",
        "rename config.yml moved.yml",
        "chmod 777 config.yml",
        "symlink config.yml link",
        "ln config.yml hard",
    ]
    result = await run_sftp(
        world.port,
        world.login("alice", world.bob_server),
        "get config.yml copy.yml\n" + "".join(f"-{a}\n" for a in attempts),
        password=ALICE_PASSWORD,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "copy.yml").read_text() == "motd: hi\n"
    assert result.stderr.count("Permission denied") >= len(attempts) - 1
    assert sorted(p.name for p in root.iterdir()) == ["config.yml", "dir"]
    assert (root / "config.yml").read_text() == "motd: hi\n"
    assert stat.S_IMODE((root / "config.yml").stat().st_mode) != 0o777


async def test_no_blocking_calls_on_the_event_loop(world: World, tmp_path: Path) -> None:
    from blockbuster import blockbuster_ctx

    (tmp_path / "up.bin").write_bytes(os.urandom(2 * 1024 * 1024))
    root = world.server_dir(world.alice_server)
    (root / "old.txt").write_text("old")
    commands = "put up.bin\nget up.bin down.bin\nls -l\nmkdir d\nrename old.txt d/new.txt\n"
    commands += "chmod 600 d/new.txt\nsymlink d/new.txt l\nrm l\ndf\n"
    with blockbuster_ctx() as detector:
        allow_known_calls(detector)  # the test's own sftp client starts here too
        result = await alice_sftp(world, commands, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "down.bin").read_bytes() == (tmp_path / "up.bin").read_bytes()
