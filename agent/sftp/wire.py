"""SSH transport settings of the SFTP listener: algorithms, window, packet sizes.

Measured with bench/sftp_throughput.py against OpenSSH's own sshd on this kind of
machine (2 cores shared by client and server):

- Ciphers: only AES-GCM. asyncssh runs each cipher per packet from Python; AES-GCM is
  one OpenSSL call per packet (AES-NI), while chacha20-poly1305 is three and cost
  half the throughput. The OpenSSH client prefers chacha20 and aes-ctr when the server
  offers them, so they are not offered. Every maintained client speaks AES-GCM
  (OpenSSH since 6.2, PuTTY/WinSCP/FileZilla since 2022, sshj, JSch forks).
- A large window and packet size for the client → server direction, so uploads
  arrive in few large SSH packets; the other direction is the client's to choose.
"""

from __future__ import annotations

from typing import Any

import asyncssh
from asyncssh.constants import MSG_IGNORE
from asyncssh.packet import String

ENCRYPTION_ALGS = ["aes128-gcm@openssh.com", "aes256-gcm@openssh.com"]

SERVER_ALGORITHMS: dict[str, Any] = {
    "encryption_algs": ENCRYPTION_ALGS,
    "window": 8 * 1024 * 1024,  # per channel: the most a client can make us buffer
    "max_pktsize": 256 * 1024,
}

_EMPTY = String(b"")


class LeanServerConnection(asyncssh.SSHServerConnection):
    """asyncssh's server connection without the empty SSH_MSG_IGNORE before each packet.

    asyncssh precedes every encrypted packet with an empty SSH_MSG_IGNORE, a
    countermeasure against CBC-mode plaintext recovery. With the AEAD-only ciphers
    above it protects nothing, and it doubled the packets, encryptions and send
    syscalls of a download.
    """

    def send_packet(self, pkttype: int, *args: bytes, handler: Any = None) -> None:
        if pkttype == MSG_IGNORE and args == (_EMPTY,):
            return
        super().send_packet(pkttype, *args, handler=handler)


def make_lean(conn: asyncssh.SSHServerConnection) -> None:
    """Turn a freshly made asyncssh server connection into a LeanServerConnection."""
    if type(conn) is asyncssh.SSHServerConnection:
        conn.__class__ = LeanServerConnection
