"""The SFTP session's outbound path: a download's bytes copied twice, not ~nine times.

asyncssh builds each SFTP response by concatenation (length + type + id + payload),
copies it into a bytearray on the channel, cuts that into SSH packets by slicing
and deleting (more copies, and reallocations), and prefixes each packet with its
channel number and length (two concatenations more); the read itself was sliced out
of its read-ahead chunk. In profiles of downloads, memmove was over a quarter of
the server's CPU.

Here, a read is answered with a view into its read-ahead chunk (OpenFile.read_view),
and every SFTP response is queued on the channel as its parts, kept as read-only
memoryviews; the channel cuts SSH packets out of those views without copying and
hands the pieces to the connection, which joins them once to seal the packet and
once more to prefix its length (wire.LeanServerConnection._send_sealed). Packets
carry up to the client's maximum packet size across response boundaries, as
OpenSSH's sshd does, instead of ending each response with a small packet of its own.
Responses written in one turn of the event loop go out together at its end: an
upload's write requests arrive several per received chunk, and their status replies
(28 bytes each) were one SSH packet, one encryption and one send() call apiece.

Inbound, requests are cut from one read of whatever arrived rather than two exact
reads each, and writes are answered with a prebuilt OK status
(LeanSFTPServerHandler.recv_packet and _write).

Built on asyncssh's channel, session and SFTP handler internals (private
attributes, as of 2.24); anything outside the case handled here (an encoding set on
the channel, other subsystems than sftp, SFTP v6) goes through asyncssh unchanged.
tests/agent/sftp/test_send_path.py and the OpenSSH-client tests exercise it.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Sequence
from typing import Any, cast

from asyncssh import SFTPServer, SSHReader, SSHServerChannel, SSHWriter
from asyncssh.constants import (
    FX_OK,
    FXP_DATA,
    FXP_READ,
    FXP_STATUS,
    FXP_WRITE,
    MSG_CHANNEL_DATA,
    MSG_CHANNEL_EOF,
    MSG_CHANNEL_EXTENDED_DATA,
)
from asyncssh.packet import Byte, SSHPacket, String, UInt32
from asyncssh.sftp import (
    MAX_SFTP_PACKET_LEN,
    SFTPBadMessage,
    SFTPEOFError,
    SFTPInvalidHandle,
    SFTPNoConnection,
    SFTPServerHandler,
)
from asyncssh.stream import SSHServerStreamSession

from agent.sftp.session import ConfinedSFTPServer

_Queued = tuple[memoryview, Any]  # bytes not sent yet, and their extended data type
_STATUS_OK = UInt32(FX_OK) + String("") + String("")  # as asyncssh words it
_READ_SIZE = 1024 * 1024  # most request bytes taken from the channel per read


def _frozen(data: bytes | bytearray | memoryview) -> memoryview:
    """A view of `data` that cannot change before it is sent: bytes, or views of bytes,
    as they are; anything else (a caller's bytearray) copied."""
    if type(data) is bytes or (type(data) is memoryview and type(data.obj) is bytes):
        return memoryview(data)
    return memoryview(bytes(data))


class LeanChannel(SSHServerChannel[bytes]):
    """asyncssh's server channel, queuing and sending data without copying it.

    The send buffer holds read-only memoryviews instead of bytearrays; window,
    water marks, EOF and close are asyncssh's own accounting, unchanged. Data written
    is sent at the end of the event loop's turn (call_soon), with whatever else was
    written in that turn.
    """

    _flush_scheduled = False
    takes_views = False  # channel data may arrive as memoryviews (an SFTP session's)

    def log_received_packet(
        self, pkttype: int, pktid: int | None, packet: Any, note: str = ""
    ) -> None:
        # asyncssh formats a name and a byte count per packet, then drops them unless
        # packets are logged: one call per 32 KiB of an upload.
        if getattr(self.logger, "_debug_level", 3) >= 3:
            super().log_received_packet(pkttype, pktid, packet, note)

    def write(self, data: Any, datatype: Any = None) -> None:
        if self._encoding:
            super().write(data, datatype)  # asyncssh encodes; the views are taken on flush
        else:
            self.write_parts((data,), datatype)

    def write_parts(self, parts: Sequence[bytes | memoryview], datatype: Any = None) -> None:
        """Queue the concatenation of `parts`, without joining them."""
        if self._send_state != "open":
            raise BrokenPipeError("Channel not open for sending")
        if datatype is not None and datatype not in self._write_datatypes:
            raise OSError("Invalid extended data type")
        queue: list[_Queued] = self._send_buf  # type: ignore[assignment]
        for part in parts:
            if part:
                queue.append((view := _frozen(part), datatype))
                self._send_buf_len += len(view)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush_written)

    def _flush_written(self) -> None:
        self._flush_scheduled = False
        self._flush_send_buf()

    def _flush_send_buf(self) -> None:
        queue: list[_Queued] = self._send_buf  # type: ignore[assignment]
        while queue and self._send_window:
            room = min(self._send_window, self._send_pktsize)
            datatype = queue[0][1]
            pieces: list[memoryview] = []
            size = 0
            while queue and size < room and queue[0][1] == datatype:
                view = memoryview(queue[0][0])  # asyncssh's write queued bytearrays
                take = room - size
                if len(view) > take:
                    pieces.append(view[:take])
                    queue[0] = (view[take:], datatype)
                    size += take
                else:
                    pieces.append(view)
                    del queue[0]
                    size += len(view)
            self._send_buf_len -= size
            self._send_window -= size
            self._send_data(datatype, size, pieces)
        self._pause_resume_writing()
        if not queue:
            if self._send_state == "eof_pending":
                self.send_packet(MSG_CHANNEL_EOF)
                self._send_state = "eof"
            elif self._send_state == "close_pending":
                self._close_send()

    def _send_data(self, datatype: Any, size: int, pieces: list[memoryview]) -> None:
        if self._send_chan is None or self._conn is None:  # as asyncssh's send_packet
            return
        head = UInt32(self._send_chan)
        if datatype is None:
            args: tuple[bytes | memoryview, ...] = (head, UInt32(size), *pieces)
            self._conn.send_packet(MSG_CHANNEL_DATA, *args, handler=self)  # type: ignore[arg-type]
        else:
            args = (head, UInt32(datatype), UInt32(size), *pieces)
            self._conn.send_packet(MSG_CHANNEL_EXTENDED_DATA, *args, handler=self)  # type: ignore[arg-type]


class _Raising:
    """A request packet whose first field read raises `error`."""

    def __init__(self, error: Exception) -> None:
        self._error = error

    def get_string(self) -> bytes:
        raise self._error


class LeanSFTPServerHandler(SFTPServerHandler):
    """asyncssh's SFTP server handler, writing each response as parts, not one join.

    Reads (SFTP v3-v5, the versions without end-of-file flags on data) of a
    ConfinedSFTPServer are answered here with the bytes read as they are, often a
    view into a read-ahead chunk, and writes with a prebuilt OK status; any error
    they raise is answered by asyncssh's own handler, so error replies are asyncssh's.
    """

    _unparsed = b""  # request bytes read from the channel, not parsed yet (from _parsed)
    _parsed = 0

    def log_received_packet(
        self, pkttype: int, pktid: int | None, packet: Any, note: str = ""
    ) -> None:
        # As LeanChannel's: asyncssh formats each request's name and size, then drops
        # them unless packets are logged.
        if getattr(self.logger, "_debug_level", 3) >= 3:
            super().log_received_packet(pkttype, pktid, packet, note)

    async def recv_packet(self) -> SSHPacket:
        """asyncssh's recv_packet, parsing requests out of whatever arrived.

        asyncssh reads each request with two exact reads (its length, then its body),
        each taking the stream's lock and slicing the rest of the buffered data; an
        upload's 32 KiB writes were two such reads apiece. Here one read takes all
        that arrived (up to _READ_SIZE) and requests are cut from it; a request split
        between two reads is joined alone (not the rest of the second read with it).
        A write request handled here (_lean_io) is a view into the bytes read, so the
        data it carries reaches the file's pwritev without another copy.
        """
        buf, pos = self._unparsed, self._parsed
        while True:
            avail = len(buf) - pos
            size = -1
            if avail >= 4:
                size = int.from_bytes(buf[pos : pos + 4], "big")
                if size > MAX_SFTP_PACKET_LEN:
                    raise SFTPBadMessage("Max packet size exceeded")
                if avail >= 4 + size:
                    self._parsed = pos + 4 + size
                    return self._request(buf, pos + 4, pos + 4 + size)
            assert self._reader is not None
            more = await self._reader.read(_READ_SIZE)
            if not more:
                raise asyncio.IncompleteReadError(buf[pos:], None)  # an EOFError, as asyncssh's
            if not avail:
                buf, pos = more, 0
            elif size >= 0 and len(more) >= 4 + size - avail:
                cut = 4 + size - avail  # the split request ends `cut` bytes into `more`
                self._unparsed, self._parsed = more, cut
                joined = b"".join((memoryview(buf)[pos + 4 :], memoryview(more)[:cut]))
                return self._request(joined, 0, len(joined))
            else:  # a split length, or a request longer than one read: rare
                buf, pos = buf[pos:] + more, 0
            self._unparsed, self._parsed = buf, pos

    def _request(self, buf: bytes, start: int, end: int) -> SSHPacket:
        """The request in buf[start:end]: a view for the writes _process_packet takes."""
        if buf[start] == FXP_WRITE and self._lean_io():
            return SSHPacket(memoryview(buf)[start:end])  # type: ignore[arg-type]
        return SSHPacket(buf if start == 0 and end == len(buf) else buf[start:end])

    def _lean_io(self) -> bool:
        """Whether reads and writes are answered here rather than by asyncssh."""
        return self._version < 6 and isinstance(self._server, ConfinedSFTPServer)

    async def _process_packet(self, pkttype: int, pktid: int, packet: SSHPacket) -> None:
        server = self._server
        if pkttype not in (FXP_READ, FXP_WRITE) or not self._lean_io():
            await super()._process_packet(pkttype, pktid, packet)
            return
        assert isinstance(server, ConfinedSFTPServer)
        try:
            if pkttype == FXP_WRITE:
                await self._write(server, packet)
            else:
                data = await self._read(server, packet)
        except Exception as exc:  # re-raised in asyncssh's own handler, which replies
            await super()._process_packet(pkttype, pktid, cast(SSHPacket, _Raising(exc)))
            return
        if pkttype == FXP_WRITE:
            self.send_packet(FXP_STATUS, pktid, UInt32(pktid), _STATUS_OK)
        else:
            self.send_packet(FXP_DATA, pktid, UInt32(pktid), UInt32(len(data)), data)  # type: ignore[arg-type]

    def _handle(self, handle: bytes) -> object:
        """The open file behind an SFTP handle (SFTPInvalidHandle when none is)."""
        file_obj = self._file_handles.get(handle)
        if file_obj is None:
            raise SFTPInvalidHandle("Invalid file handle")
        return file_obj

    async def _write(self, server: ConfinedSFTPServer, packet: SSHPacket) -> None:
        """asyncssh's _process_write for SFTP v3-v5, without its per-write debug
        formatting (a byte count and the handle in hex, built even when not logged)
        and generic reply dispatch: an upload is one such request per 32 KiB. The
        packet is a view (recv_packet): so are the handle and the data taken from it."""
        handle = bytes(packet.get_string())
        offset = packet.get_uint64()
        data = packet.get_string()
        packet.check_end()
        await server.write(self._handle(handle), offset, data)

    async def _read(self, server: ConfinedSFTPServer, packet: SSHPacket) -> bytes | memoryview:
        """asyncssh's _process_read for SFTP v3-v5, without copying the bytes read."""
        handle = packet.get_string()
        offset = packet.get_uint64()
        length = packet.get_uint32()
        packet.check_end()
        data = await server.read_view(self._handle(handle), offset, length)
        if not data:
            raise SFTPEOFError
        return data

    def send_packet(self, pkttype: int, pktid: int | None, *args: bytes) -> None:
        writer = self._writer
        if not writer:
            raise SFTPNoConnection("Connection not open")
        channel = writer.channel
        if not isinstance(channel, LeanChannel):
            super().send_packet(pkttype, pktid, *args)
            return
        if channel.is_closing():
            return
        kind = Byte(pkttype)
        channel.write_parts((UInt32(1 + sum(map(len, args))), kind, *args))
        if getattr(self.logger, "_debug_level", 3) >= 3:  # asyncssh logs packets only then
            self.log_sent_packet(pkttype, pktid, kind + b"".join(args))


async def _serve_sftp(
    server: SFTPServer | Awaitable[SFTPServer],
    reader: SSHReader[bytes],
    writer: SSHWriter[bytes],
    version: int,
) -> None:
    """asyncssh's run_sftp_server, with LeanSFTPServerHandler."""
    if inspect.isawaitable(server):
        server = await server
    assert isinstance(server, SFTPServer)
    await LeanSFTPServerHandler(server, reader, writer, version).run()


class LeanStreamSession(SSHServerStreamSession[bytes]):
    """asyncssh's server session, serving the sftp subsystem with LeanSFTPServerHandler."""

    def session_started(self) -> None:
        chan, conn = self._chan, self._conn
        if chan is None or conn is None or chan.get_subsystem() != "sftp":
            super().session_started()
            return
        server = self._init_sftp_server()  # sets the channel to bytes, no encoding
        if isinstance(chan, LeanChannel) and not chan.get_encoding()[0]:
            chan.takes_views = True  # the handler copies channel data once, when read
        reader = SSHReader[bytes](self, chan)
        writer = SSHWriter[bytes](self, chan)
        reader.logger.info("Starting SFTP server")
        handler = _serve_sftp(server, reader, writer, self._sftp_version)
        conn.create_task(handler, reader.logger)


def make_lean_session(chan: object, session: object) -> None:
    """Turn a freshly opened asyncssh session channel and session into the lean ones."""
    if type(chan) is SSHServerChannel and type(session) is SSHServerStreamSession:
        chan.__class__ = LeanChannel
        session.__class__ = LeanStreamSession
