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

import os
import time
from typing import Any

import asyncssh
from asyncssh.constants import MSG_CHANNEL_DATA, MSG_IGNORE
from asyncssh.crypto.cipher import GCMCipher
from asyncssh.encryption import GCMEncryption
from asyncssh.packet import SSHPacket, String
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from agent.sftp.send_path import make_lean_session

ENCRYPTION_ALGS = ["aes128-gcm@openssh.com", "aes256-gcm@openssh.com"]

SERVER_ALGORITHMS: dict[str, Any] = {
    "encryption_algs": ENCRYPTION_ALGS,
    "window": 8 * 1024 * 1024,  # per channel: the most a client can make us buffer
    "max_pktsize": 256 * 1024,
}

_EMPTY = String(b"")


class _LeanGCMDecryption(GCMEncryption):
    """asyncssh's GCM packet decryption with one copy of the packet instead of two."""

    def __init__(self, cipher: GCMCipher) -> None:
        super().__init__(cipher)
        self._opener = AESGCM(cipher._key)

    def decrypt_packet(
        self, seq: int, first: bytes, rest: bytes, header_len: int, mac: bytes
    ) -> bytes | None:
        cipher = self._cipher
        sealed = b"".join((first[header_len:], rest, mac))
        try:
            plain: bytes | None = self._opener.decrypt(cipher._iv, sealed, first[:header_len])
        except InvalidTag:
            plain = None
        cipher._update_iv()
        return plain


class LeanServerConnection(asyncssh.SSHServerConnection):
    """asyncssh's server connection, with less work per packet sent and received.

    Built on asyncssh's connection internals (private attributes, as of 2.24); the
    OpenSSH-client tests in tests/agent/sftp exercise every path here.

    - No empty SSH_MSG_IGNORE before each packet: asyncssh sends one as a countermeasure
      against CBC-mode plaintext recovery. With the AEAD-only ciphers above it protects
      nothing, and it doubled the packets, encryptions and send syscalls of a download.
    - Received bytes are held until the packet being read is complete (see
      data_received), instead of being appended piece by piece to one bytes buffer,
      then handed to asyncssh's handlers one packet part at a time (_feed_packets),
      and are decrypted with one copy of the packet instead of two.
    - Session channels send SFTP responses without copying them (send_path), and
      channel data arrives here as pieces (memoryviews), joined once.
    - Channel data (the bulk of a transfer; at most 32 KiB per packet to an OpenSSH
      client) is framed and sealed with AES-GCM here in one pass: one join, one
      encryption with a per-key AESGCM object, padding cut from a batch of
      os.urandom bytes instead of one getrandom call per packet. The wire format,
      sequence numbers, rekey accounting and packet logging are asyncssh's own; any
      packet outside the steady state (before auth, rekey due, compression, another
      cipher) goes through asyncssh's send_packet unchanged.
    """

    _pad_pool = b""
    _pad_used = 0
    _sealer: AESGCM | None = None
    _sealer_of: GCMCipher | None = None  # the asyncssh cipher whose key _sealer holds

    _held: list[bytes] | None = None  # received bytes not yet appended to _inpbuf
    _held_len = 0

    def data_received(self, data: bytes, datatype: Any = None) -> None:
        # asyncssh appends each received piece to one bytes buffer, copying the whole
        # buffer each time: a 256 KiB packet arriving in pieces was copied several times
        # over. The pieces are held here until the packet being read is complete. The
        # packet length was already checked against the maximum, so this is bounded.
        if type(self._recv_encryption) is GCMEncryption:  # new keys: asyncssh's own class
            self._recv_encryption = _LeanGCMDecryption(self._recv_encryption._cipher)
        held = self._held
        if held is not None:
            held.append(data)
            self._held_len += len(data)
        if self._recv_handler == self._recv_packet:
            wanted = 4 + self._pktlen + self._recv_macsize - self._recv_blocksize
            pending = len(data) if held is None else self._held_len
            if len(self._inpbuf) + pending < wanted:
                if held is None:
                    self._held, self._held_len = [data], len(data)
                self._reset_keepalive_timer()  # as asyncssh does on any data
                return
        if held is not None:
            self._held = None
            data = b"".join(held)
        self._reset_keepalive_timer()
        self._feed_packets(data)

    def _feed_packets(self, data: bytes) -> None:
        """Hand `data` to asyncssh's receive handlers one packet part at a time.

        asyncssh keeps unparsed bytes in one bytes buffer and slices each packet's
        header block and body off its front, copying the whole remainder twice per
        packet: with OpenSSH's 32 KiB upload packets arriving 256 KiB per recv(),
        that copied every received byte about eight times. With AES-GCM the length of
        each packet is in clear, so once keys are in use the buffer is filled with
        just the part the waiting handler takes (the header block, then the rest of
        the packet) and each handler slices off all of it, leaving nothing to copy.
        Anything else (before the keys, a handler busy with an awaited packet, a
        partial packet) goes to asyncssh's buffer as it would have.
        """
        view = memoryview(data)
        pos, end = 0, len(data)
        while pos < end and self._transport is not None:
            if type(self._recv_encryption) is not _LeanGCMDecryption:
                break
            handler = self._recv_handler
            if handler == self._recv_pkthdr:
                take = self._recv_blocksize
            elif handler == self._recv_packet:
                take = 4 + self._pktlen + self._recv_macsize - self._recv_blocksize
            else:
                break  # an awaited packet: asyncssh resumes from its buffer
            need = take - len(self._inpbuf)  # what completes the part begun in a recv before
            if need <= 0 or end - pos < need:
                break
            piece = data if need == end else view[pos : pos + need].tobytes()
            self._inpbuf = self._inpbuf + piece if self._inpbuf else piece
            pos += need
            self._run_recv_handlers()
        if pos < end:
            self._inpbuf += data if pos == 0 else view[pos:].tobytes()
            self._run_recv_handlers()

    def _run_recv_handlers(self) -> None:
        """asyncssh's _recv_data without its keepalive reset (done once per recv)."""
        try:
            while self._inpbuf and self._recv_handler():
                pass
        except asyncssh.DisconnectError as exc:
            self._send_disconnect(exc.code, exc.reason, exc.lang)
            self._force_close(exc)
        except Exception:  # as asyncssh: logged, the connection closed
            self.internal_error()

    def _process_session_open(self, packet: SSHPacket) -> Any:
        opened = super()._process_session_open(packet)
        make_lean_session(*opened)  # responses without copies: see send_path
        return opened

    def send_packet(self, pkttype: int, *args: bytes, handler: Any = None) -> None:
        if pkttype == MSG_IGNORE and args == (_EMPTY,):
            return
        encryption = self._send_encryption
        if (
            pkttype == MSG_CHANNEL_DATA
            and type(encryption) is GCMEncryption
            and self._in_steady_state()
        ):
            self._send_sealed(encryption, pkttype, args, handler)
            return
        super().send_packet(pkttype, *args, handler=handler)

    def _in_steady_state(self) -> bool:
        """Whether asyncssh's send_packet would just frame, seal and send (no rekey)."""
        return bool(
            self._auth_complete
            and self._kex_complete
            and self._compressor is None
            and self._rekey_bytes_sent < self._rekey_bytes
            and not (self._rekey_seconds and time.monotonic() >= self._rekey_time)
        )

    def _padding(self, size: int) -> bytes:
        # Fresh random bytes for every packet, fetched 4 KiB at a time; never reused.
        if self._pad_used + size > len(self._pad_pool):
            self._pad_pool = os.urandom(4096)
            self._pad_used = 0
        start = self._pad_used
        self._pad_used = start + size
        return self._pad_pool[start : start + size]

    def _send_sealed(
        self, encryption: GCMEncryption, pkttype: int, args: tuple[bytes, ...], handler: Any
    ) -> None:
        """asyncssh's send_packet + GCMCipher.encrypt_and_sign, for one packet."""
        payload_len = 1 + sum(map(len, args))
        padlen = -(self._send_enchdrlen + payload_len) % self._send_blocksize
        if padlen < 4:
            padlen += self._send_blocksize
        pktlen = 1 + payload_len + padlen
        header = pktlen.to_bytes(4, "big")
        cipher: GCMCipher = encryption._cipher
        if cipher is not self._sealer_of or self._sealer is None:  # new keys after kex
            self._sealer_of = cipher
            self._sealer = AESGCM(cipher._key)
        plain = b"".join((bytes((padlen, pkttype)), *args, self._padding(padlen)))
        sealed = self._sealer.encrypt(cipher._iv, plain, header)
        cipher._update_iv()
        self._send(header + sealed)
        seq = self._send_seq
        self._send_seq = (seq + 1) & 0xFFFFFFFF
        self._rekey_bytes_sent += pktlen
        if getattr(self.logger, "_debug_level", 3) >= 3:  # asyncssh logs packets only then
            (handler or self).log_sent_packet(pkttype, seq, bytes((pkttype,)) + b"".join(args))


def make_lean(conn: asyncssh.SSHServerConnection) -> None:
    """Turn a freshly made asyncssh server connection into a LeanServerConnection."""
    if type(conn) is asyncssh.SSHServerConnection:
        conn.__class__ = LeanServerConnection
