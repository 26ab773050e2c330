"""The copy-free send path (agent.sftp.send_path): reads byte-exact across read-ahead
chunk edges, their errors answered by asyncssh's handler, sessions on the lean classes.
Downloads by the OpenSSH client are in test_openssh_client.py."""

from __future__ import annotations

import os
import random
from typing import Any, cast

import asyncssh
import pytest
from asyncssh.constants import FXP_WRITE
from asyncssh.sftp import MAX_SFTP_PACKET_LEN, SFTPBadMessage, SFTPServerHandler

from agent.sftp.file_io import CHUNK
from agent.sftp.send_path import LeanChannel, LeanSFTPServerHandler, _frozen, _Raising
from agent.sftp.session import ConfinedSFTPServer
from agent.sftp.wire import RECV_SIZE, LeanServerConnection, WideReads
from tests.agent.sftp.conftest import ALICE_PASSWORD, World, asyncssh_sftp


def _payload(world: World, size: int) -> bytes:
    data = os.urandom(size)
    (world.server_dir(world.alice_server) / "f.bin").write_bytes(data)
    return data


async def _read(remote: asyncssh.SFTPClientFile, size: int = -1, at: int | None = None) -> bytes:
    return cast(bytes, await remote.read(size, at))  # opened in binary mode


async def _unused(*args: object) -> bytes:
    raise AssertionError("reads are answered by LeanSFTPServerHandler, with read_view")


# The service speaks SFTP v3: a v6 client is answered in v3 too.
@pytest.mark.parametrize("version", [3, 6])
async def test_reads_are_byte_exact(
    world: World, version: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ConfinedSFTPServer, "read", _unused)
    payload = _payload(world, 2 * CHUNK + 12_345)
    conn, sftp = await asyncssh_sftp(world, version=version)
    async with conn, sftp.open("/f.bin", "rb", block_size=255 * 1024) as remote:
        assert await _read(remote) == payload  # parallel requests, sequential offsets
        for offset, size in [(CHUNK - 7, 100), (0, 1), (3, CHUNK + 5), (len(payload) - 9, 50)]:
            assert await _read(remote, size, offset) == payload[offset : offset + size]
        assert await _read(remote, 10, len(payload)) == b""  # SSH_FX_EOF, by asyncssh's handler


async def test_read_errors_get_asyncssh_replies(world: World) -> None:
    _payload(world, 1000)
    conn, sftp = await asyncssh_sftp(world)
    async with conn:
        async with sftp.open("/f.bin", "wb") as write_only:
            with pytest.raises(asyncssh.SFTPFailure):  # EBADF from pread
                await write_only.read(10, 0)
        async with sftp.open("/f.bin", "rb") as readable:
            assert await _read(readable, 10, 0) == b""  # truncated by the "wb" open


_asyncssh_write: Any = SFTPServerHandler._packet_handlers[FXP_WRITE]


async def _errors_only(handler: SFTPServerHandler, packet: object) -> object:
    """asyncssh's write handler, reached only to word an error's reply."""
    assert isinstance(packet, _Raising), "writes are answered by LeanSFTPServerHandler"
    return await _asyncssh_write(handler, packet)


@pytest.mark.parametrize("version", [3, 6])
async def test_writes_are_byte_exact_and_errors_get_asyncssh_replies(
    world: World, version: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(SFTPServerHandler._packet_handlers, FXP_WRITE, _errors_only)
    payload = os.urandom(CHUNK + 33_333)
    conn, sftp = await asyncssh_sftp(world, version=version)
    async with conn:
        async with sftp.open("/w.bin", "wb", block_size=32 * 1024) as remote:
            await remote.write(payload)
            await remote.write(b"patch", 7)
        async with sftp.open("/w.bin", "rb") as read_only:
            with pytest.raises(asyncssh.SFTPPermissionDenied):  # asyncssh's reply
                await read_only.write(b"x", 0)
    expected = bytearray(payload)
    expected[7:12] = b"patch"
    assert (world.server_dir(world.alice_server) / "w.bin").read_bytes() == expected


async def test_sessions_use_the_lean_classes(world: World) -> None:
    conn, sftp = await asyncssh_sftp(world)
    async with conn:
        await sftp.listdir("/")
        (session,) = world.service.sessions
        channels = list(session.conn._channels.values())
        assert channels
        assert all(type(chan) is LeanChannel for chan in channels)
        # Reads of up to RECV_SIZE: on uvloop (the agent's loop) through the buffered
        # protocol in front of the connection, on asyncio's through `max_size`.
        transport = session.conn._transport
        assert transport is not None
        reader = transport.get_protocol()
        assert type(reader) is WideReads
        assert len(reader.get_buffer(-1)) == RECV_SIZE


def test_only_immutable_bytes_are_queued_without_a_copy() -> None:
    data = b"x" * 100
    assert _frozen(data).obj is data
    assert _frozen(memoryview(data)[10:20]).obj is data
    mutable = bytearray(b"abc")
    queued = _frozen(mutable)
    mutable[0] = ord("z")
    assert queued.tobytes() == b"abc"
    assert _frozen(memoryview(mutable)).tobytes() == b"zbc"


async def test_download_across_key_exchanges(world: World) -> None:
    # During a key exchange asyncssh holds packets back and sends them after it:
    # the held packets' parts are views, which must still read the same bytes then.
    payload = _payload(world, 3 * CHUNK)
    conn = await asyncssh.connect(
        "127.0.0.1",
        world.port,
        username=world.login("alice", world.alice_server),
        password=ALICE_PASSWORD,
        known_hosts=None,
        client_keys=None,
        agent_path=None,
        rekey_bytes=2048,  # counts what the client sends: its read requests
    )
    async with (
        conn,
        conn.start_sftp_client() as sftp,
        sftp.open("/f.bin", "rb", block_size=32 * 1024) as remote,
    ):
        for _ in range(2):  # about seven key exchanges
            assert await _read(remote, len(payload), 0) == payload


async def test_replies_of_one_turn_share_a_packet(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An upload's status replies, written in one turn of the event loop, leave as one
    SSH packet (one encryption, one send) rather than one each."""
    sealed: list[int] = []
    real = LeanServerConnection._send_sealed

    def counting(self: LeanServerConnection, *args: Any) -> None:
        sealed.append(1)
        real(self, *args)

    payload = os.urandom(4 * 1024 * 1024)
    conn, sftp = await asyncssh_sftp(world)
    async with conn:
        monkeypatch.setattr(LeanServerConnection, "_send_sealed", counting)
        async with sftp.open("/up.bin", "wb", block_size=32 * 1024) as remote:
            await remote.write(payload)  # 128 writes, many in flight at once
        monkeypatch.undo()
    assert (world.server_dir(world.alice_server) / "up.bin").read_bytes() == payload
    assert len(sealed) < 128 // 2


class _PieceReader:
    """A channel reader handing out a byte stream in given piece sizes."""

    def __init__(self, stream: bytes, sizes: list[int]) -> None:
        self._stream, self._sizes, self._pos = stream, sizes, 0

    async def read(self, n: int) -> bytes:
        size = min(n, self._sizes.pop(0) if self._sizes else n)
        piece = self._stream[self._pos : self._pos + size]
        self._pos += len(piece)
        return piece


def _handler_reading(stream: bytes, sizes: list[int]) -> Any:
    handler: Any = object.__new__(LeanSFTPServerHandler)
    handler._reader = _PieceReader(stream, sizes)
    handler._version, handler._server = 3, object.__new__(ConfinedSFTPServer)
    return handler


async def test_requests_are_cut_from_whatever_arrived() -> None:
    rng = random.Random(3)
    bodies = [
        bytes((rng.choice([FXP_WRITE, FXP_WRITE + 1]),))
        + os.urandom(rng.choice([0, 9, 32 * 1024 + 28, rng.randrange(1, 200_000)]))
        for _ in range(50)
    ]
    stream = b"".join(len(body).to_bytes(4, "big") + body for body in bodies)
    sizes = [rng.choice([1, 3, 4, 5, 1000, 32 * 1024, 300_000]) for _ in range(len(stream))]
    handler = _handler_reading(stream, sizes)
    for body in bodies:
        packet = await handler.recv_packet()
        assert packet.get_remaining_payload() == body
        # Writes are views into what was read (their data goes on to pwritev as is).
        assert (type(packet.get_full_payload()) is memoryview) == (body[0] == FXP_WRITE)
    with pytest.raises(EOFError):
        await handler.recv_packet()
    truncated = _handler_reading(stream[: 4 + len(bodies[0]) - 1], [])
    with pytest.raises(EOFError):  # the stream ends inside a request
        await truncated.recv_packet()


async def test_an_oversized_request_is_refused() -> None:
    handler = _handler_reading((MAX_SFTP_PACKET_LEN + 1).to_bytes(4, "big") + b"x", [])
    with pytest.raises(SFTPBadMessage):
        await handler.recv_packet()
