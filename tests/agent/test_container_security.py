"""Tenants' containers against the real dockerd: an unprivileged user by default, no
capabilities even for a server that asks for root, a data directory owned by the
container's user and mounted nosuid,nodev on the host, closed to other host users."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import stat
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc.aio
import pytest

from agent.config import AgentConfig
from agent.daemon import RunningAgent
from agent.fleet.data_dir import mount_options, release_mount, release_mounts_beneath
from protos import agent_pb2 as pb
from protos import agent_pb2_grpc as pb_grpc
from tests.agent.conftest import AUTH, agent_in_background, make_config, spec
from tests.docker_support import docker_engine

pytestmark = pytest.mark.docker

USER = (988, 988)
NO_CAPABILITIES = "0000000000000000"


async def run_to_exit(stub: pb_grpc.AgentAsyncStub, server: pb.ServerSpec) -> pb.Server:
    """Create and start `server`, and wait until its command has exited."""
    await stub.CreateServer(pb.CreateServerRequest(spec=server, start=True), metadata=AUTH)
    async with asyncio.timeout(20):
        while True:
            found = await stub.GetServer(pb.GetServerRequest(id=server.id), metadata=AUTH)
            if found.status.exited:
                return found
            await asyncio.sleep(0.05)


def data_dir(agent: RunningAgent, server_id: str) -> Path:
    return Path(agent.config.data_dir) / "volumes" / server_id


def container_config(server_id: str) -> tuple[str, list[str]]:
    with docker_engine() as client:
        attrs = client.api.inspect_container(f"encedeus-{server_id}")
    return str(attrs["Config"]["User"]), list(attrs["HostConfig"]["CapDrop"] or [])


def capability_line(text: str) -> str:
    return next(line.split()[1] for line in text.splitlines() if line.startswith("CapEff:"))


async def test_servers_run_as_the_unprivileged_user_without_capabilities(
    stub: pb_grpc.AgentAsyncStub, agent: RunningAgent
) -> None:
    script = "id -u > /data/uid; id -g > /data/gid; cat /proc/self/status > /data/status"
    server = await run_to_exit(stub, spec(script))
    assert server.status.exit_code == 0
    files = data_dir(agent, server.spec.id)
    assert (files / "uid").read_text().strip() == "988"
    assert (files / "gid").read_text().strip() == "988"
    assert capability_line((files / "status").read_text()) == NO_CAPABILITIES
    assert container_config(server.spec.id) == ("988:988", ["ALL"])
    for path in (files, files / "uid"):
        info = path.lstat()
        assert (info.st_uid, info.st_gid) == USER


async def test_a_server_that_asks_for_root_gets_no_capabilities(
    stub: pb_grpc.AgentAsyncStub, agent: RunningAgent
) -> None:
    script = (
        "id -u > /data/uid; cat /proc/self/status > /data/status; touch /data/f;"
        " chown 1:1 /data/f && echo chowned > /data/chown;"
        " mknod /data/null c 1 3 && echo made > /data/mknod; true"
    )
    server = await run_to_exit(stub, spec(script, run_as_root=True))
    assert server.status.exit_code == 0
    files = data_dir(agent, server.spec.id)
    assert (files / "uid").read_text().strip() == "0"
    assert capability_line((files / "status").read_text()) == NO_CAPABILITIES
    assert not (files / "chown").exists()  # CAP_CHOWN is gone
    assert not (files / "mknod").exists()  # CAP_MKNOD is gone
    assert container_config(server.spec.id) == ("0:0", ["ALL"])
    assert (files.lstat().st_uid, files.lstat().st_gid) == (0, 0)


def open_path_to(path: Path, stop: Path) -> None:
    """Let other users search every directory from `stop` down to `path`, so that
    only the mount's options stand between them and a file in it."""
    for directory in (path, *path.parents):
        directory.chmod(directory.stat().st_mode | 0o111)
        if directory == stop:
            return


def ping_as_nobody(binary: Path) -> subprocess.CompletedProcess[str]:
    """`busybox ping` keeps a setuid root (it needs a raw socket): it works for
    `nobody` only when the kernel honoured the setuid bit. (`id -u` cannot show it:
    busybox drops a setuid root at once for applets that do not need one.)"""
    command = ["runuser", "-u", "nobody", "--", str(binary), "ping", "-c", "1", "127.0.0.1"]
    return subprocess.run(command, capture_output=True, text=True, timeout=20, check=False)


@pytest.fixture
def reachable_dir() -> Iterator[Path]:
    """A directory other users may search down to (pytest's own base is 0700)."""
    path = Path(tempfile.mkdtemp(prefix="encedeus-suid-"))
    path.chmod(0o711)
    try:
        yield path
    finally:
        release_mounts_beneath(path)
        shutil.rmtree(path)


async def test_a_setuid_binary_written_by_a_root_server_gives_no_root_on_the_host(
    reachable_dir: Path,
) -> None:
    if shutil.which("runuser") is None or os.geteuid() != 0:
        pytest.skip("needs root and runuser")
    config = make_config(reachable_dir / "skyhook", f"node-{uuid.uuid4().hex[:8]}")
    script = "cp /bin/busybox /data/busybox && chmod 4755 /data/busybox"
    async with agent_in_background(config) as agent, _stub(agent) as stub:
        server = await run_to_exit(stub, spec(script, run_as_root=True))
        assert server.status.exit_code == 0
        files = data_dir(agent, server.spec.id)
        planted = files / "busybox"
        info = planted.lstat()
        assert (info.st_uid, info.st_mode & stat.S_ISUID) == (0, stat.S_ISUID)  # setuid root
        assert {"nosuid", "nodev"} <= (mount_options(files) or frozenset())

        # The same file outside the data directory: proof that the check can tell.
        control = reachable_dir / "control" / "busybox"
        control.parent.mkdir()
        shutil.copy2(planted, control)
        open_path_to(control.parent, reachable_dir)
        if ping_as_nobody(control).returncode != 0:
            pytest.skip(f"{reachable_dir} does not honour setuid bits: nothing to compare")

        # Only the mount's options stand between `nobody` and the planted file now.
        open_path_to(files, reachable_dir)
        refused = ping_as_nobody(planted)
        assert refused.returncode != 0
        assert "root" in refused.stderr  # "permission denied (are you root?)"


async def test_other_host_users_cannot_reach_the_volumes(agent: RunningAgent) -> None:
    volumes = Path(agent.config.data_dir) / "volumes"
    assert stat.S_IMODE(volumes.stat().st_mode) == 0o700
    assert stat.S_IMODE(volumes.parent.stat().st_mode) == 0o700


async def test_data_written_as_root_is_reowned_once_and_links_are_not_followed(
    agent_config: AgentConfig, tmp_path: Path
) -> None:
    outside = tmp_path / "host-file"
    outside.write_text("host")
    server = spec("touch /data/written-by-server")
    volumes = Path(agent_config.data_dir) / "volumes"
    old = volumes / server.id
    (old / "sub").mkdir(parents=True)
    (old / "sub" / "old-file").write_text("written as root before")
    (old / "escape").symlink_to(outside)
    (old / "escape-dir").symlink_to(tmp_path)
    async with agent_in_background(agent_config) as agent, _stub(agent) as stub:
        await run_to_exit(stub, server)
        for path in (old, old / "sub", old / "sub" / "old-file", old / "escape"):
            assert (path.lstat().st_uid, path.lstat().st_gid) == USER, path
        assert (old / "written-by-server").lstat().st_uid == USER[0]
        assert (outside.stat().st_uid, tmp_path.stat().st_uid) == (0, 0)  # not followed

        # Once: a later root-owned file is left alone by the next start.
        (old / "later").write_text("")
        await stub.StartServer(pb.StartServerRequest(id=server.id), metadata=AUTH)
        assert (old / "later").lstat().st_uid == 0


async def test_the_mount_comes_back_on_agent_start_and_goes_with_the_data(
    agent_config: AgentConfig,
) -> None:
    kept = spec("true")
    async with agent_in_background(agent_config) as agent, _stub(agent) as stub:
        await run_to_exit(stub, kept)
    volumes = Path(agent_config.data_dir) / "volumes"
    await asyncio.to_thread(release_mount, volumes / kept.id)  # as after a reboot
    volumes.chmod(0o755)  # as an older agent left it
    deleted = spec("true")
    async with agent_in_background(agent_config) as agent, _stub(agent) as stub:
        assert {"nosuid", "nodev"} <= (mount_options(volumes / kept.id) or frozenset())
        assert stat.S_IMODE(volumes.stat().st_mode) == 0o700
        await run_to_exit(stub, deleted)
        assert mount_options(volumes / deleted.id) is not None
        request = pb.RemoveServerRequest(id=deleted.id, delete_data=True)
        await stub.RemoveServer(request, metadata=AUTH)
        assert mount_options(volumes / deleted.id) is None
        assert not (volumes / deleted.id).exists()


@contextlib.asynccontextmanager
async def _stub(agent: RunningAgent) -> AsyncIterator[pb_grpc.AgentAsyncStub]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{agent.grpc.port}") as channel:
        yield pb_grpc.AgentStub(channel)
