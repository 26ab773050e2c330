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
- Up to RECV_SIZE bytes per recv() rather than asyncio's 256 KiB.
"""

from __future__ import annotations

import asyncio
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

from agent.sftp.send_path import LeanChannel, make_lean_session

ENCRYPTION_ALGS = ["aes128-gcm@openssh.com", "aes256-gcm@openssh.com"]

SERVER_ALGORITHMS: dict[str, Any] = {
    "encryption_algs": ENCRYPTION_ALGS,
    "window": 8 * 1024 * 1024,  # per channel: the most a client can make us buffer
    "max_pktsize": 256 * 1024,
}

_EMPTY = String(b"")
# Most bytes per recv() (asyncio's default is 256 KiB): an upload arrives in a quarter
# of the calls, and fewer of its packets are split between two of them (each split
# packet is joined). Measured: 15-20 % less server CPU per uploaded MiB, downloads
# unchanged.
RECV_SIZE = 1024 * 1024
_DATA_AT = 1 + 1 + 4 + 4  # padding length, type, channel, data length: channel data's start


class _LeanGCMDecryption(GCMEncryption):
    """asyncssh's GCM packet decryption, plus `open` for a packet lying whole in the
    received bytes: decrypted in place, its parts never joined."""

    def __init__(self, cipher: GCMCipher) -> None:
        super().__init__(cipher)
        self._opener = AESGCM(cipher._key)
        self.opened: bytes | None = None  # the next packet, already decrypted by `open`

    def open(self, sealed: memoryview, header: memoryview) -> bytes | None:
        """The plaintext of the next packet (ciphertext and tag `sealed`, length
        `header`); None, and nothing changed, when its tag is wrong."""
        cipher = self._cipher
        try:
            plain: bytes = self._opener.decrypt(cipher._iv, sealed, header)
        except InvalidTag:
            return None
        cipher._update_iv()
        return plain

    def decrypt_packet(
        self, seq: int, first: bytes, rest: bytes, header_len: int, mac: bytes
    ) -> bytes | None:
        plain = self.opened
        if plain is not None:
            self.opened = None
            return plain
        cipher = self._cipher
        sealed = b"".join((first[header_len:], rest, mac))
        try:
            plain = self._opener.decrypt(cipher._iv, sealed, first[:header_len])
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
      then decrypted where they lie (_feed_packets). Channel data for an SFTP session
      goes from there to its channel as a view into the decrypted packet, skipping
      asyncssh's per-packet dispatch; other packets go to asyncssh's handlers one
      packet part at a time. Between recv() and the SFTP handler's read of the
      channel, an upload byte is copied by AES-GCM only (and once more when its packet
      was split between two recv() calls); it was about five times.
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

    _held: list[bytes | memoryview] | None = None  # received, waiting for a packet's end
    _held_len = 0
    _held_want = 0  # how many held bytes complete that packet

    def data_received(self, data: bytes, datatype: Any = None) -> None:
        # asyncssh appends each received piece to one bytes buffer, copying the whole
        # buffer each time: a 256 KiB packet arriving in pieces was copied several times
        # over. The pieces of a packet split between recv() calls are held here until
        # it is complete, then joined once (that packet alone, not the packets after
        # it). Its length was checked against the maximum, so this is bounded.
        if type(self._recv_encryption) is GCMEncryption:  # new keys: asyncssh's own class
            self._recv_encryption = _LeanGCMDecryption(self._recv_encryption._cipher)
        self._reset_keepalive_timer()  # as asyncssh does on any data
        held = self._held
        if held is not None:
            need = self._held_want - self._held_len  # what completes the held packet
            if len(data) < need:
                held.append(data)
                self._held_len += len(data)
                return
            self._held = None
            self._feed_packets(b"".join((*held, memoryview(data)[:need])))  # that packet
            if need < len(data):
                self._feed_packets(memoryview(data)[need:] if need else data)
            return
        if self._recv_handler == self._recv_packet:  # asyncssh holds part of a packet
            wanted = 4 + self._pktlen + self._recv_macsize - self._recv_blocksize
            if len(self._inpbuf) + len(data) < wanted:
                self._hold(data, wanted - len(self._inpbuf))
                return
        self._feed_packets(data)

    def _hold(self, piece: bytes | memoryview, want: int) -> None:
        self._held, self._held_len, self._held_want = [piece], len(piece), want

    def _feed_packets(self, data: bytes | memoryview) -> None:
        """Hand `data` to asyncssh's receive handlers one packet part at a time.

        asyncssh keeps unparsed bytes in one bytes buffer and slices each packet's
        header block and body off its front, copying the whole remainder twice per
        packet: with OpenSSH's 32-256 KiB upload packets arriving 256 KiB per recv(),
        that copied every received byte several times. With AES-GCM the length of
        each packet is in clear, so once keys are in use each whole packet in `data` is
        decrypted where it lies (_LeanGCMDecryption.open); channel data for an SFTP
        session is delivered from there (_take_channel_data), and any other packet is
        given to asyncssh's handlers, decrypted already, as two views into `data` (its
        header block, then the rest), each handler slicing off all of it. A packet's
        beginning without its end is held (data_received) until the rest arrives.
        Anything else (before the keys, a handler busy with an awaited packet) goes to
        asyncssh's buffer as it would have.
        """
        view = memoryview(data)
        pos, end = 0, len(data)
        block, mac = self._recv_blocksize, self._recv_macsize
        while pos < end and self._transport is not None:
            decryption = self._recv_encryption
            if type(decryption) is not _LeanGCMDecryption:
                break
            handler = self._recv_handler
            if handler == self._recv_pkthdr and not self._inpbuf:
                if end - pos < 4:
                    self._hold(view[pos:], 4)
                    return
                pktlen = int.from_bytes(view[pos : pos + 4], "big")
                total = 4 + pktlen + mac
                if pktlen > self._max_recv_pktlen or total < block:
                    break  # asyncssh refuses it
                if end - pos < total:
                    self._hold(view[pos:], total)
                    return
                plain = decryption.open(view[pos + 4 : pos + total], view[pos : pos + 4])
                if plain is not None and self._take_channel_data(plain):
                    pos += total
                    continue
                decryption.opened = plain  # None (a bad tag): asyncssh decrypts and refuses
                self._inpbuf = view[pos : pos + block]  # type: ignore[assignment]
                self._run_recv_handlers()
                if self._recv_handler == self._recv_packet and not self._inpbuf:
                    self._inpbuf = view[pos + block : pos + total]  # type: ignore[assignment]
                    self._run_recv_handlers()
                    pos += total
                else:
                    pos += block
                decryption.opened = None
            elif handler == self._recv_packet:  # asyncssh holds the header and maybe more
                need = 4 + self._pktlen + mac - block - len(self._inpbuf)
                if end - pos < need:
                    self._hold(view[pos:], need)
                    return
                self._inpbuf = self._inpbuf + view[pos : pos + need]
                pos += need
                self._run_recv_handlers()
            else:
                break  # an awaited packet: asyncssh resumes from its buffer
        if pos < end:
            self._inpbuf += data if pos == 0 and type(data) is bytes else view[pos:].tobytes()
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
        if type(self._inpbuf) is not bytes:  # a view _feed_packets gave: asyncssh appends
            self._inpbuf = bytes(self._inpbuf)

    def _take_channel_data(self, plain: bytes) -> bool:
        """Deliver `plain`, a decrypted packet, if it is channel data for an SFTP
        session in the steady state, as a view into `plain`; False for anything else.

        What asyncssh's _recv_packet, _process_data and _finish_recv_packet do for such
        a packet (the channel's _accept_data, with its window and pause accounting,
        and the sequence number), without their dispatch, packet object and copies:
        they were most of the loop's time per packet of an upload. Anything unusual
        (another packet type, a closed channel, a length that does not add up, more
        than the window, debug logging on) is left to asyncssh, which checks it.
        """
        if len(plain) < _DATA_AT or plain[1] != MSG_CHANNEL_DATA or not plain[0]:
            return False  # (no padding: asyncssh's slicing refuses the packet)
        chan = self._channels.get(int.from_bytes(plain[2:6], "big"))
        if (
            type(chan) is not LeanChannel
            or not chan.takes_views
            or chan._recv_state != "open"
            or not self._auth_complete
            or self._decompressor is not None
            or getattr(chan.logger, "_debug_level", 2) >= 2  # asyncssh logs each packet
        ):
            return False
        size = int.from_bytes(plain[6:10], "big")
        if _DATA_AT + size + plain[0] != len(plain) or size > chan._recv_window:
            return False
        try:
            chan._accept_data(memoryview(plain)[_DATA_AT : _DATA_AT + size])  # type: ignore[arg-type]
        except asyncssh.DisconnectError as exc:
            self._send_disconnect(exc.code, exc.reason, exc.lang)
            self._force_close(exc)
        except Exception:  # as asyncssh: logged, the connection closed
            self.internal_error()
        self._auth_final = True  # as after any packet past authentication
        self._recv_seq = (self._recv_seq + 1) & 0xFFFFFFFF
        return True

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


class WideReads(asyncio.BufferedProtocol):
    """In front of a connection whose transport reads at most ~256 KB a callback
    (uvloop's, which has no `max_size`): reads of up to RECV_SIZE into a buffer of its
    own, each handed to the connection as bytes (it keeps pieces of split packets)."""

    def __init__(self, conn: asyncssh.SSHServerConnection) -> None:
        self._conn = conn
        self._view = memoryview(bytearray(RECV_SIZE))

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._view

    def buffer_updated(self, nbytes: int) -> None:
        self._conn.data_received(self._view[:nbytes].tobytes())

    def eof_received(self) -> None:
        self._conn.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self._conn.connection_lost(exc)

    def pause_writing(self) -> None:
        self._conn.pause_writing()

    def resume_writing(self) -> None:
        self._conn.resume_writing()


def make_lean(conn: asyncssh.SSHServerConnection) -> None:
    """Turn a freshly made asyncssh server connection into a LeanServerConnection."""
    if type(conn) is asyncssh.SSHServerConnection:
        conn.__class__ = LeanServerConnection
        transport = conn._transport
        if isinstance(getattr(transport, "max_size", None), int):  # asyncio's socket transport
            transport.max_size = RECV_SIZE  # type: ignore[union-attr]
        elif transport is not None:
            transport.set_protocol(WideReads(conn))
