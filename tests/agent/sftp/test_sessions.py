"""Session lifetime: revalidation, revocation, throttling, and hostile packets."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import struct

import asyncssh
import pytest

from agent.controlplane_client import HttpControlPlane
from agent.sftp import SFTPService
from agent.sftp.wire import LeanServerConnection
from tests.agent.sftp.conftest import ALICE_PASSWORD, World, asyncssh_sftp, password_login
from tests.agent.sftp.controlplane_fake import NODE_SECRET


async def _closed(conn: asyncssh.SSHClientConnection, timeout: float = 5.0) -> bool:
    try:
        await asyncio.wait_for(conn.wait_closed(), timeout)
    except TimeoutError:
        return False
    return True


async def _still_serves(world: World) -> None:
    conn, sftp = await asyncssh_sftp(world)
    async with conn:
        assert await sftp.realpath(".") == "/"


async def test_password_change_ends_the_session(world: World) -> None:
    conn, sftp = await asyncssh_sftp(world)
    await sftp.listdir("/")
    (session,) = world.service.sessions
    assert isinstance(session.conn, LeanServerConnection)  # see agent.sftp.wire
    await world.service.revalidate_all()
    assert not conn.is_closed()
    world.control_plane.accounts["alice"].password = "a-new-password"
    await world.service.revalidate_all()
    assert await _closed(conn)
    assert world.service.sessions == frozenset()
    assert world.control_plane.requests[-1]["revalidate"] is True


async def test_removed_key_ends_the_session(world: World) -> None:
    conn = await asyncssh.connect(
        "127.0.0.1",
        world.port,
        username=world.login("alice", world.alice_server),
        client_keys=[str(world.alice_key)],
        known_hosts=None,
        agent_path=None,
    )
    await (await conn.start_sftp_client()).listdir("/")
    world.control_plane.accounts["alice"].keys.clear()
    await world.service.revalidate_all()
    assert await _closed(conn)


@pytest.mark.parametrize("change", ["deleted", "lost_access", "revoked"])
async def test_server_gone_or_access_lost_ends_the_session(world: World, change: str) -> None:
    conn, sftp = await asyncssh_sftp(world)
    await sftp.listdir("/")
    if change == "deleted":
        del world.control_plane.servers[world.alice_server]
        await world.service.revalidate_all()
    elif change == "lost_access":
        world.control_plane.servers[world.alice_server].owner = "bob"
        await world.service.revalidate_all()
    else:
        assert world.service.revoke(world.alice_server) == 1
    assert await _closed(conn)


async def test_control_plane_outage_keeps_sessions(world: World) -> None:
    conn, sftp = await asyncssh_sftp(world)
    async with conn:
        world.control_plane.down = True
        await world.service.revalidate_all()
        assert await sftp.listdir("/") is not None
        assert not conn.is_closed()


async def test_becoming_read_only_applies_to_the_open_session(world: World) -> None:
    conn, sftp = await asyncssh_sftp(world)
    async with conn:
        await sftp.mkdir("before")
        world.control_plane.servers[world.alice_server].owner = "bob"
        world.control_plane.servers[world.alice_server].read_only_users.add("alice")
        await world.service.revalidate_all()
        with pytest.raises(asyncssh.SFTPPermissionDenied):
            await sftp.mkdir("after")


async def test_periodic_revalidation(world: World) -> None:
    control_plane = HttpControlPlane(world.control_plane.url, NODE_SECRET)
    service = SFTPService(
        control_plane,
        data_dir=world.data_dir,
        host="127.0.0.1",
        port=0,
        file_owner=None,
        revalidate_interval=0.2,
    )
    await service.start()
    try:
        conn = await password_login(
            service.port, world.login("alice", world.alice_server), ALICE_PASSWORD
        )
        world.control_plane.accounts["alice"].password = "changed-password"
        assert await _closed(conn, timeout=5)
    finally:
        await service.stop()
        await control_plane.close()


async def _refused(port: int, username: str, password: str) -> None:
    with pytest.raises(asyncssh.PermissionDenied):
        await password_login(port, username, password)


async def test_parallel_password_guesses_are_reserved_before_asking(world: World) -> None:
    """20 guesses at once: only the free failures (2 here) reach the control plane."""
    username = world.login("alice", world.alice_server)
    before = len(world.control_plane.requests)
    await asyncio.gather(*(_refused(world.port, username, "guess") for _ in range(20)))
    assert len(world.control_plane.requests) - before == 2
    asked = len(world.control_plane.requests)
    await _refused(world.port, username, ALICE_PASSWORD)
    assert len(world.control_plane.requests) == asked  # held back: not even asked
    # Neither a key login from the same client nor another account is held back.
    conn = await asyncssh.connect(
        "127.0.0.1",
        world.port,
        username=username,
        client_keys=[str(world.alice_key)],
        known_hosts=None,
        agent_path=None,
    )
    async with conn:
        await (await conn.start_sftp_client()).listdir("/")
    conn, sftp = await asyncssh_sftp(world, "bob", "bob-password-22")
    async with conn:
        await sftp.listdir("/")


async def test_garbage_after_the_banner_ends_only_that_connection(world: World) -> None:
    conn, sftp = await asyncssh_sftp(world)
    async with conn:
        reader, writer = await asyncio.open_connection("127.0.0.1", world.port)
        banner = await reader.readline()
        assert banner.startswith(b"SSH-2.0-")
        writer.write(b"SSH-2.0-evil\r\n" + os.urandom(8192) + struct.pack(">I", 2**31))
        await writer.drain()
        assert await asyncio.wait_for(reader.read(), 10) is not None  # server hangs up
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        # A raw socket that stops mid-packet and leaves.
        raw = socket.create_connection(("127.0.0.1", world.port))
        raw.sendall(b"SSH-2.0-half\r\n" + struct.pack(">I", 1000) + b"\x05")
        raw.close()
        assert await sftp.listdir("/") is not None
    await _still_serves(world)


class _Raw(asyncssh.SSHClientSession[bytes]):
    def __init__(self) -> None:
        self.data = b""
        self.closed = asyncio.Event()

    def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
        self.data += data

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed.set()


def _reply_length(data: bytes) -> int:
    """Bytes of the FXP_VERSION reply at the start of `data` (any more is an answer)."""
    return 4 + struct.unpack(">I", data[:4])[0] if len(data) >= 4 else 2**32


def _sftp_packet(kind: int, body: bytes, *, claimed: int | None = None) -> bytes:
    payload = bytes([kind]) + body
    return struct.pack(">I", len(payload) if claimed is None else claimed) + payload


@pytest.mark.parametrize(
    ("hostile", "eof"),
    [
        # FXP_OPEN whose path string claims 1000 bytes and brings 3: a BAD_MESSAGE reply
        (_sftp_packet(3, struct.pack(">I", 7) + struct.pack(">I", 1000) + b"abc"), False),
        # a packet that claims 100 bytes, brings 9, and the stream ends
        (_sftp_packet(3, struct.pack(">I", 7) + b"abcd", claimed=100), True),
        # a packet claiming more than the server accepts: the session ends
        (_sftp_packet(5, b"\x00" * 8, claimed=2**31), False),
        # an unknown request type: an "unsupported" reply
        (_sftp_packet(250, struct.pack(">I", 9)), False),
    ],
    ids=["bad-field", "cut-short", "oversized", "unknown-type"],
)
async def test_malformed_sftp_packets_end_only_that_session(
    world: World, hostile: bytes, eof: bool
) -> None:
    conn, sftp = await asyncssh_sftp(world)
    async with conn:
        chan, session = await conn.create_session(_Raw, subsystem="sftp", encoding=None)
        assert isinstance(session, _Raw)
        raw = session
        chan.write(_sftp_packet(1, struct.pack(">I", 3)))  # FXP_INIT, version 3
        chan.write(hostile)
        if eof:
            chan.write_eof()

        async def answered() -> None:
            while len(raw.data) <= _reply_length(raw.data) and not raw.closed.is_set():
                await asyncio.sleep(0.01)

        await asyncio.wait_for(answered(), 10)
        chan.close()
        # The other SFTP channel on the same connection, and new connections, carry on.
        assert await sftp.realpath(".") == "/"
    await _still_serves(world)


async def test_stop_closes_sessions_with_open_files(world: World) -> None:
    conn, sftp = await asyncssh_sftp(world)
    handle = await sftp.open("open.bin", "wb")
    await handle.write(b"x" * 100_000)
    await world.service.stop()
    assert await _closed(conn)
    assert world.service.sessions == frozenset()
    assert (world.server_dir(world.alice_server) / "open.bin").stat().st_size == 100_000
