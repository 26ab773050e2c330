"""SFTP logins name the slot's volume, not the replica: `<account>.<volume id[:8]>`
opens `<data_dir>/volumes/<volume id>` whichever replica the control plane names."""

from __future__ import annotations

import uuid

import asyncssh
import pytest

from agent.controlplane_client import SFTPGrant
from agent.sftp.login import grant_problem
from tests.agent.sftp.conftest import ALICE_PASSWORD, World, password_login
from tests.agent.sftp.controlplane_fake import Server


async def test_the_login_names_the_volume_and_opens_its_directory(world: World) -> None:
    replica, volume = str(uuid.uuid4()), str(uuid.uuid4())
    world.control_plane.servers[replica] = Server(owner="alice", volume_id=volume)
    (world.data_dir / "volumes" / volume).mkdir(parents=True)
    async with (
        await password_login(world.port, f"alice.{volume[:8]}", ALICE_PASSWORD) as conn,
        conn.start_sftp_client() as sftp,
        sftp.open("made-over-sftp.txt", "w") as made,
    ):
        await made.write("in the volume")
    assert (world.data_dir / "volumes" / volume / "made-over-sftp.txt").is_file()
    assert not (world.data_dir / "volumes" / replica).exists()
    with pytest.raises(asyncssh.PermissionDenied):
        await password_login(world.port, f"alice.{replica[:8]}", ALICE_PASSWORD)


def test_a_grant_must_name_the_volume_of_the_login_and_of_the_server_here() -> None:
    grant = SFTPGrant("server-1234", "u", frozenset({"file.read"}), volume_id="volume-567")
    assert grant_problem(grant, "volume-5", None) is None
    assert grant_problem(grant, "volume-5", "volume-567") is None
    assert grant_problem(grant, "server-1", None) == "control plane answered for another server"
    assert grant_problem(grant, "volume-5", "volume-999") is not None  # runs elsewhere here
    old = SFTPGrant("server-1234", "u", frozenset({"file.read"}))  # no volume id: the server's
    assert grant_problem(old, "server-1", None) is None
    bad = SFTPGrant("server-1234", "u", frozenset({"file.read"}), volume_id="../../etc")
    assert grant_problem(bad, "../../e", None) is not None
