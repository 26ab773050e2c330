"""No way out of a server's directory: `..`, absolute paths, and symlinks that a real
container made (to /, to a host file, to a sibling server, chains, loops).

Every attempt must fail and nothing outside may change; sentinel files outside the
server directory are checked byte for byte, mode and all, afterwards.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import stat
import uuid
from pathlib import Path

import asyncssh
import pytest

from common.subprocesses import spawn
from tests.agent.sftp.conftest import World, alice_sftp, asyncssh_sftp, requires_sftp_client
from tests.conftest import TEST_IMAGE

LINKS = {
    "root": "/",
    "shadow": "/etc/shadow",
    "abs_data": "/data",
    "outside_rel": "../../outside.txt",
    "chain1": "chain2",
    "chain2": "chain3",
    "chain3": "/",
    "loop_a": "loop_b",
    "loop_b": "loop_a",
    "sub/up": "../../",
    "inner_file": "sub/file",
}


def _snapshot(paths: list[Path]) -> dict[str, tuple[bytes, int] | None]:
    state: dict[str, tuple[bytes, int] | None] = {}
    for path in paths:
        try:
            state[str(path)] = (path.read_bytes(), path.stat().st_mode)
        except FileNotFoundError:
            state[str(path)] = None
    return state


def _tree_listing(*roots: Path) -> set[str]:
    found: set[str] = set()
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            found.update(os.path.join(dirpath, n) for n in [*dirnames, *filenames])
    return found


def _docker_ready() -> bool:
    if shutil.which("docker") is None:
        return False
    code = os.system(f"docker image inspect {TEST_IMAGE} >/dev/null 2>&1")  # noqa: S605
    return code == 0


async def _links_made_in_container(server_dir: Path, sibling: str) -> None:
    """Make the hostile links from inside a real container, with /data bind-mounted."""
    script = ["mkdir -p /data/sub", "echo inner > /data/sub/file", "mkfifo /data/fifo"]
    script += [f"ln -s '{target}' '/data/{name}'" for name, target in LINKS.items()]
    script += [f"ln -s '../{sibling}' /data/sibling", "mknod /data/disk b 8 0 || true"]
    label = f"encedeus.test.sftp={uuid.uuid4()}"
    proc = await spawn(
        "docker",
        "run",
        "--rm",
        "--label",
        label,
        "--network",
        "none",
        "-v",
        f"{server_dir}:/data",
        TEST_IMAGE,
        "sh",
        "-ec",
        "; ".join(script),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode == 0, err.decode()


def _links_made_on_host(server_dir: Path, sibling: str) -> None:
    (server_dir / "sub").mkdir()
    (server_dir / "sub" / "file").write_text("inner\n")
    os.mkfifo(server_dir / "fifo")
    for name, target in LINKS.items():
        os.symlink(target, server_dir / name)
    os.symlink(f"../{sibling}", server_dir / "sibling")


@pytest.fixture
async def hostile(world: World, tmp_path: Path) -> tuple[World, list[Path]]:
    """Alice's server directory full of hostile links, and the sentinels outside it."""
    outside = world.data_dir / "outside.txt"
    outside.write_text("outside sentinel\n")
    outside.chmod(0o640)
    bob = world.server_dir(world.bob_server)
    (bob / "secret.txt").write_text("bob's secret\n")
    (bob / "secret.txt").chmod(0o600)
    (bob / "bobdir").mkdir()
    alice = world.server_dir(world.alice_server)
    if _docker_ready():
        await _links_made_in_container(alice, world.bob_server)
    else:
        _links_made_on_host(alice, world.bob_server)
    return world, [outside, bob / "secret.txt", Path("/etc/shadow"), Path("/etc/passwd")]


OPENSSH_ATTEMPTS = [
    # reads
    "get root/etc/passwd",
    "get shadow",
    "get abs_data/outside.txt",
    "get outside_rel",
    "get sibling/secret.txt",
    "get chain1/etc/passwd",
    "get loop_a",
    "get fifo",
    "get disk",
    "get ../outside.txt",
    "get /../outside.txt",
    "get ../../../../etc/passwd",
    "get sub/../../outside.txt",
    "get sub/up/outside.txt",
    "get ../BOB/secret.txt",
    # listings
    "ls root",
    "ls sibling",
    "ls chain1",
    "ls sub/up",
    "ls ..",
    "ls /..",
    "ls ../BOB",
    # writes
    "put up.txt root/tmp/pwned",
    "put up.txt shadow",
    "put up.txt outside_rel",
    "put up.txt sibling/pwned",
    "put up.txt ../pwned",
    "put up.txt ../BOB/pwned",
    "put up.txt sub/up/pwned",
    "put up.txt chain1/tmp/pwned",
    # metadata and removal through links
    "chmod 777 shadow",
    "chmod 777 outside_rel",
    "chmod 777 sibling/secret.txt",
    "chmod 777 root",
    "chmod 777 ../outside.txt",
    "rm sibling/secret.txt",
    "rm ../outside.txt",
    "rm ../BOB/secret.txt",
    "rm root/etc/hostname",
    "mkdir root/tmp/newdir",
    "mkdir sibling/newdir",
    "mkdir ../newdir",
    "rmdir sibling/bobdir",
    "rmdir ../BOB/bobdir",
    # renames out of (and into) the tree
    "rename shadow ../moved",
    "rename outside_rel ../BOB/moved",
    "rename sibling/secret.txt stolen.txt",
    "rename ../outside.txt stolen2.txt",
    "rename sub ../BOB/sub",
    # links pointing out
    "symlink ../.. up2",
    "symlink ../BOB sib2",
    "ln sibling/secret.txt hard1",
    "ln ../outside.txt hard2",
]


@requires_sftp_client
async def test_openssh_client_cannot_escape(
    hostile: tuple[World, list[Path]], tmp_path: Path
) -> None:
    world, sentinels = hostile
    local = tmp_path / "client"
    local.mkdir()
    (local / "up.txt").write_text("pwned\n")
    before = _snapshot(sentinels)
    outside_tree = [world.data_dir, Path(str(tmp_path))]
    listing_before = _tree_listing(*outside_tree)
    attempts = [a.replace("BOB", world.bob_server) for a in OPENSSH_ATTEMPTS]

    result = await alice_sftp(
        world, "".join(f"-{a}\n" for a in attempts) + "pwd\nget inner_file\n", cwd=local
    )

    assert result.returncode == 0, result.stderr
    assert "Remote working directory: /" in result.stdout
    assert _snapshot(sentinels) == before
    # Downloads of everything but the one legitimate inner link came back empty-handed.
    assert sorted(p.name for p in local.iterdir()) == ["inner_file", "up.txt"]
    assert (local / "inner_file").read_text() == "inner\n"
    answers = "\n".join(x for x in result.stdout.splitlines() if not x.startswith("sftp>"))
    for leaked in ("bob's secret", "outside sentinel", "root:", "secret.txt", "bobdir", "etc"):
        assert leaked not in answers
    alice = world.server_dir(world.alice_server)
    new_paths = _tree_listing(*outside_tree) - listing_before
    assert all(p.startswith(str(alice)) or p.startswith(str(local)) for p in new_paths), new_paths
    assert not (alice / "stolen.txt").exists()
    assert not (alice / "hard1").exists()
    assert not (alice / "up2").exists()
    assert not (alice / "sib2").exists()
    failures = [line for line in result.stderr.splitlines() if line.strip()]
    # Every attempt printed an error, except `ls <link>` of the four links to outside
    # directories: like ls(1) on a dangling link, the client shows the link's own name.
    assert len(failures) >= len(attempts) - 4, result.stdout


@pytest.mark.parametrize("resolver", ["openat2", "walk"])
async def test_raw_paths_cannot_escape(hostile: tuple[World, list[Path]], resolver: str) -> None:
    from agent.files import confine as beneath

    world, sentinels = hostile
    before = _snapshot(sentinels)
    saved = beneath.openat2_available()
    beneath.use_openat2(resolver == "openat2")
    conn, sftp = await asyncssh_sftp(world)
    try:
        for path in [
            "../outside.txt",
            "/../outside.txt",
            "root/etc/passwd",
            "shadow",
            "chain1/etc/passwd",
            "sibling/secret.txt",
            "abs_data/outside.txt",
            "sub/up/outside.txt",
            "..//../outside.txt",
            "sub/../../outside.txt",
        ]:
            with pytest.raises(asyncssh.SFTPError):
                async with sftp.open(path) as f:
                    await f.read()
            with pytest.raises(asyncssh.SFTPError):
                await sftp.stat(path)
        with pytest.raises(asyncssh.SFTPError):
            await sftp.stat("loop_a")
        # realpath never shows a host path, whatever it is asked.
        for path in ["..", "/..", "root", "sibling", "chain1", "../../..", "sub/up"]:
            real = await sftp.realpath(path)
            assert real.startswith("/")
            assert str(world.data_dir) not in real
        assert await sftp.realpath("..") == "/"
        assert await sftp.realpath("inner_file") == "/sub/file"
        # The link itself can be inspected and removed; its target is untouched.
        assert stat.S_ISLNK((await sftp.lstat("shadow")).permissions or 0)
        assert await sftp.readlink("shadow") == "/etc/shadow"
        with pytest.raises(asyncssh.SFTPError):
            await sftp.chmod("outside_rel", 0o777)
        await sftp.remove("outside_rel")
        # Absolute link targets are client paths, stored relative to stay inside.
        await sftp.symlink("/sub/file", "sub/abs_link")
        assert os.readlink(world.server_dir(world.alice_server) / "sub/abs_link") == "file"
        with pytest.raises(asyncssh.SFTPError):
            await sftp.symlink("../../outside.txt", "sub/climb")
        with pytest.raises(asyncssh.SFTPError):
            await sftp.rename("shadow", "../shadow")
        with pytest.raises(asyncssh.SFTPError):
            await sftp.listdir("root")
        names = await sftp.listdir("/")
        assert "outside.txt" not in names
    finally:
        conn.close()
        await conn.wait_closed()
        beneath.use_openat2(saved)
    assert _snapshot(sentinels) == before


async def test_a_client_asking_for_sftp_v6_gets_v3(hostile: tuple[World, list[Path]]) -> None:
    """The server speaks v3 only, like OpenSSH's (v5/v6 opens take another path in
    asyncssh, open56, which is confined as well: see test_session_unit)."""
    world, sentinels = hostile
    before = _snapshot(sentinels)
    conn, sftp = await asyncssh_sftp(world, version=6)
    async with conn:
        assert sftp.version == 3
        async with sftp.open("v6.txt", "w") as f:
            await f.write("six")
        async with sftp.open("v6.txt") as f:
            assert await f.read() == "six"
        for path in ["../outside.txt", "/etc/passwd", "shadow", "sibling/secret.txt", "chain1"]:
            with pytest.raises(asyncssh.SFTPError):
                async with sftp.open(path) as f:
                    await f.read()
            with pytest.raises(asyncssh.SFTPError):
                async with sftp.open(path, "w") as f:
                    await f.write("pwned")
    assert (world.server_dir(world.alice_server) / "v6.txt").read_text() == "six"
    assert _snapshot(sentinels) == before
