"""The receive path of agent.sftp.wire: with AES-GCM, each packet is decrypted where it
lies in the received bytes (a packet split between recv() calls is joined alone),
channel data for an SFTP session goes straight to its channel as a view, asyncssh's
handlers are fed any other packet one part at a time (no copying of a whole recv()
buffer per packet), and uploads stay byte-exact across key exchanges and any split of
the received bytes."""

from __future__ import annotations

import os
import random
import struct
from types import SimpleNamespace
from typing import Any

import asyncssh
from asyncssh.constants import MSG_CHANNEL_DATA, MSG_IGNORE

from agent.sftp.file_io import CHUNK
from agent.sftp.send_path import LeanChannel
from agent.sftp.wire import LeanServerConnection, _LeanGCMDecryption
from tests.agent.sftp.conftest import ALICE_PASSWORD, World

BLOCK, MAC = 16, 16


class _FakeReceiver:
    """Stand-ins for asyncssh's _recv_pkthdr / _recv_packet over a toy framing
    (4-byte length in clear, body, 16-byte tag), recording what each one saw."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.packets: list[bytes] = []
        self.opened: list[bytes] = []  # what the decryption was given, header + sealed
        self.largest_buffer = 0

    def open(self, sealed: memoryview, header: memoryview) -> bytes:
        self.opened.append(bytes(header) + bytes(sealed))
        return bytes((4, MSG_IGNORE)) + bytes(4)  # not channel data: to the handlers

    def pkthdr(self) -> bool:
        conn = self.conn
        self.largest_buffer = max(self.largest_buffer, len(conn._inpbuf))
        if len(conn._inpbuf) < BLOCK:
            return False
        conn._packet, conn._inpbuf = conn._inpbuf[:BLOCK], conn._inpbuf[BLOCK:]
        conn._pktlen = int.from_bytes(conn._packet[:4], "big")
        conn._recv_handler = conn._recv_packet
        return True

    def packet(self) -> bool:
        conn = self.conn
        self.largest_buffer = max(self.largest_buffer, len(conn._inpbuf))
        rem = 4 + conn._pktlen + MAC - BLOCK
        if len(conn._inpbuf) < rem:
            return False
        self.packets.append(bytes(conn._packet) + bytes(conn._inpbuf[:rem]))
        conn._inpbuf = conn._inpbuf[rem:]
        conn._recv_handler = conn._recv_pkthdr
        return True


def _fake_connection() -> tuple[Any, _FakeReceiver]:
    conn: Any = object.__new__(LeanServerConnection)
    receiver = _FakeReceiver(conn)
    conn._recv_pkthdr, conn._recv_packet = receiver.pkthdr, receiver.packet
    conn._recv_handler = conn._recv_pkthdr
    conn._recv_encryption = object.__new__(_LeanGCMDecryption)
    conn._recv_encryption.open = receiver.open
    conn._recv_encryption.opened = None
    conn._recv_blocksize, conn._recv_macsize = BLOCK, MAC
    conn._max_recv_pktlen = 1024 * 1024
    conn._inpbuf, conn._packet, conn._pktlen = b"", b"", 0
    conn._transport = object()
    conn._reset_keepalive_timer = lambda: None
    return conn, receiver


def test_each_handler_gets_one_packet_part_whatever_the_split() -> None:
    rng = random.Random(5)
    packets = []
    for _ in range(60):
        body = os.urandom(rng.choice([12, 28, 32 * 1024 + 44, rng.randrange(12, 70_000)]))
        packets.append(struct.pack(">I", len(body)) + body + os.urandom(MAC))
    stream = b"".join(packets)
    conn, receiver = _fake_connection()
    pos = 0
    while pos < len(stream):  # recv() sizes from a few bytes to 256 KiB
        size = rng.choice([1, 7, 16, 1000, 40_000, 256 * 1024])
        conn.data_received(stream[pos : pos + size])
        pos += size
    assert receiver.packets == packets
    assert receiver.opened == packets  # each decrypted whole, once
    largest_part = max(len(p) for p in packets) - BLOCK
    assert receiver.largest_buffer <= largest_part  # never a whole recv() buffer


async def test_upload_across_key_exchanges(world: World) -> None:
    # Key exchanges change the receive cipher between packets; asyncssh's own buffer
    # takes over around them.
    payload = os.urandom(3 * CHUNK + 777)
    conn = await asyncssh.connect(
        "127.0.0.1",
        world.port,
        username=world.login("alice", world.alice_server),
        password=ALICE_PASSWORD,
        known_hosts=None,
        client_keys=None,
        agent_path=None,
        rekey_bytes=1024 * 1024,  # counts what the client sends: the upload
    )
    async with (
        conn,
        conn.start_sftp_client() as sftp,
        sftp.open("/up.bin", "wb", block_size=64 * 1024) as remote,
    ):
        await remote.write(payload)
    stored = world.server_dir(world.alice_server) / "up.bin"
    assert stored.read_bytes() == payload


class _Delivered:
    """A LeanChannel of an SFTP session, recording the data it accepts."""

    def __init__(self, conn: Any, number: int) -> None:
        chan: Any = object.__new__(LeanChannel)
        chan.takes_views, chan._recv_state, chan._recv_window = True, "open", 1 << 20
        chan._logger = SimpleNamespace(_debug_level=1)  # asyncssh's default: no packet logs
        self.data: list[memoryview] = []
        chan._accept_data = self.data.append
        conn._channels = {number: chan}
        self.chan = chan


def _data_packet(channel: int, data: bytes, padding: int = 4) -> bytes:
    body = bytes((MSG_CHANNEL_DATA,)) + struct.pack(">II", channel, len(data)) + data
    return bytes((padding,)) + body + bytes(padding)


def test_channel_data_of_an_sftp_session_goes_to_its_channel_as_a_view() -> None:
    conn: Any = object.__new__(LeanServerConnection)
    conn._auth_complete, conn._decompressor, conn._recv_seq = True, None, 7
    conn._auth_final = False
    channel = _Delivered(conn, 3)
    plain = _data_packet(3, b"upload bytes")
    assert conn._take_channel_data(plain)
    (view,) = channel.data
    assert type(view) is memoryview
    assert view.obj is plain
    assert view.tobytes() == b"upload bytes"
    assert conn._recv_seq == 8
    assert conn._auth_final
    # Anything unusual is left to asyncssh's checks (and its errors):
    assert not conn._take_channel_data(_data_packet(4, b"x"))  # no such channel
    assert not conn._take_channel_data(_data_packet(3, b"x")[:-1])  # length does not add up
    assert not conn._take_channel_data(bytes((4, MSG_IGNORE)) + bytes(8 + 4))
    channel.chan._recv_window = 0
    assert not conn._take_channel_data(_data_packet(3, b"x"))  # beyond the window
    channel.chan._recv_window, channel.chan.takes_views = 1 << 20, False
    assert not conn._take_channel_data(_data_packet(3, b"x"))  # not an SFTP session
    assert len(channel.data) == 1
    assert conn._recv_seq == 8
