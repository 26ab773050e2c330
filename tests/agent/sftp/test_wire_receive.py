"""The receive path of agent.sftp.wire: with AES-GCM, asyncssh's handlers are fed one
packet part at a time (no copying of a whole recv() buffer per packet), and uploads
stay byte-exact across key exchanges and any split of the received bytes."""

from __future__ import annotations

import os
import random
import struct
from typing import Any

import asyncssh

from agent.sftp.file_io import CHUNK
from agent.sftp.wire import LeanServerConnection, _LeanGCMDecryption
from tests.agent.sftp.conftest import ALICE_PASSWORD, World

BLOCK, MAC = 16, 16


class _FakeReceiver:
    """Stand-ins for asyncssh's _recv_pkthdr / _recv_packet over a toy framing
    (4-byte length in clear, body, 16-byte tag), recording what each one saw."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.packets: list[bytes] = []
        self.largest_buffer = 0

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
        self.packets.append(conn._packet + conn._inpbuf[:rem])
        conn._inpbuf = conn._inpbuf[rem:]
        conn._recv_handler = conn._recv_pkthdr
        return True


def _fake_connection() -> tuple[Any, _FakeReceiver]:
    conn: Any = object.__new__(LeanServerConnection)
    receiver = _FakeReceiver(conn)
    conn._recv_pkthdr, conn._recv_packet = receiver.pkthdr, receiver.packet
    conn._recv_handler = conn._recv_pkthdr
    conn._recv_encryption = object.__new__(_LeanGCMDecryption)
    conn._recv_blocksize, conn._recv_macsize = BLOCK, MAC
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
