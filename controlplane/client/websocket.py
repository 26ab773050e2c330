"""A small blocking WebSocket client (RFC 6455) on the standard library, for the
`encedeus exec` and `console` commands, which must not depend on aiohttp.

It does the client handshake (checking `Sec-WebSocket-Accept`), masks what it
sends, answers pings, reassembles fragmented messages, and answers a close. Not
supported: extensions (no permessage-deflate is offered) and subprotocols.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import json
import json.scanner
import os
import socket
import ssl
import struct
from typing import Any, NamedTuple
from urllib.parse import urlsplit

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
MAX_HEADER_BYTES = 64 * 1024
READ_SIZE = 65536
WHOLE_DATA_FRAME = (0x80 | TEXT, 0x80 | BINARY)  # FIN, no extension bits
# json's C scanner itself: json.loads reaches it through three Python functions and two
# regex matches, which a console's client pays for every line (cold, ~30 us a line).
_scan_json = json.scanner.make_scanner(json.JSONDecoder())  # type: ignore[arg-type]


class WebSocketError(Exception):
    """The handshake was refused (`status` is the HTTP status) or the peer broke the
    protocol or the connection (`status` 0)."""

    def __init__(self, message: str, *, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class Message(NamedTuple):
    """One whole message: `text` for a text message, else `data` (a NamedTuple: made
    once per message on a console's hot path, where a frozen dataclass's __init__
    sets each field through object.__setattr__)."""

    opcode: int
    data: bytes

    @property
    def text(self) -> str:
        return self.data.decode()

    def json(self) -> Any:
        text = self.data.decode()  # text frames are UTF-8 (RFC 6455 5.6)
        try:
            value, end = _scan_json(text, 0)
        except StopIteration:
            end = -1
        if end != len(text):  # not one bare JSON value: json.loads decides (and explains)
            return json.loads(text)
        return value


_new_message = functools.partial(tuple.__new__, Message)  # NamedTuple's __new__ is Python


def accept_key(key: str) -> str:
    """The `Sec-WebSocket-Accept` a server must answer to `key`."""
    return base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()  # noqa: S324


def encode_frame(opcode: int, payload: bytes, *, fin: bool = True, mask: bool = True) -> bytes:
    """One frame; clients mask every frame they send (section 5.3)."""
    head = bytearray([(0x80 if fin else 0) | opcode])
    size = len(payload)
    flag = 0x80 if mask else 0
    if size < 126:
        head.append(flag | size)
    elif size < 1 << 16:
        head += struct.pack(">BH", flag | 126, size)
    else:
        head += struct.pack(">BQ", flag | 127, size)
    if not mask:
        return bytes(head) + payload
    key = os.urandom(4)
    return bytes(head) + key + _masked(payload, key)


def _masked(payload: bytes, key: bytes) -> bytes:
    # XOR with the key repeated, as one big-integer operation rather than per byte.
    repeated = (key * (len(payload) // 4 + 1))[: len(payload)]
    value = int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")
    return value.to_bytes(len(payload), "big")


class WebSocket:
    """A connected socket; every method blocks. Use :func:`connect` to open one."""

    def __init__(self, sock: socket.socket, leftover: bytes = b"") -> None:
        self.sock = sock
        self._buffer = bytearray(leftover)
        self.closed = False
        self.close_code: int | None = None

    def fileno(self) -> int:
        return self.sock.fileno()

    def has_buffered(self) -> bool:
        """True when bytes already read wait here (select() on the socket won't say)."""
        pending = self.sock.pending() if isinstance(self.sock, ssl.SSLSocket) else 0
        return bool(self._buffer) or pending > 0

    def send_text(self, text: str) -> None:
        self._send(TEXT, text.encode())

    def send_json(self, value: Any) -> None:
        self.send_text(json.dumps(value))

    def send_binary(self, data: bytes) -> None:
        self._send(BINARY, data)

    def _send(self, opcode: int, payload: bytes) -> None:
        if self.closed:
            raise WebSocketError("the WebSocket is closed")
        try:
            self.sock.sendall(encode_frame(opcode, payload))
        except OSError as exc:
            raise WebSocketError(f"connection lost: {exc}") from exc

    def _read(self) -> bytes:
        try:
            chunk = self.sock.recv(READ_SIZE)
        except OSError as exc:
            raise WebSocketError(f"connection lost: {exc}") from exc
        if not chunk:
            raise WebSocketError("connection closed without a close frame")
        return chunk

    def _fill(self, size: int) -> None:
        """Read until the buffer holds at least `size` bytes."""
        while len(self._buffer) < size:
            self._buffer += self._read()

    def _read_frame(self) -> tuple[bool, int, bytes]:
        # One header parse and one slice per frame, the buffer read in place: a
        # console line is a small frame, often the only one a read returns.
        buffer = self._buffer
        if len(buffer) < 2:
            self._fill(2)
        first, second = buffer[0], buffer[1]
        if first & 0x70:
            raise WebSocketError("a frame uses an extension that was not negotiated")
        if second & 0x80:
            raise WebSocketError("a server must not mask its frames")
        size, start = second & 0x7F, 2
        if size >= 126:
            start = 4 if size == 126 else 10
            self._fill(start)
            size = int.from_bytes(buffer[2:start], "big")
            if size > MAX_MESSAGE_BYTES:
                raise WebSocketError(f"a frame of {size} bytes is over the limit")
        end = start + size
        if len(buffer) < end:
            self._fill(end)
        payload = bytes(buffer[start:end])
        del buffer[:end]
        return bool(first & 0x80), first & 0x0F, payload

    def receive(self) -> Message | None:
        """The next whole text or binary message; None once the peer has closed."""
        if not self._buffer and not self.closed:
            # The usual case on a console: a read holding one whole small data frame,
            # taken as it is, without the buffer.
            chunk = self._read()
            size = len(chunk) - 2
            if 0 <= size < 126 and chunk[1] == size and chunk[0] in WHOLE_DATA_FRAME:
                return _new_message((chunk[0] & 0x0F, chunk[2:]))
            self._buffer += chunk
        opcode, parts, total = 0, list[bytes](), 0
        while not self.closed:
            fin, frame_opcode, payload = self._read_frame()
            if fin and frame_opcode in (TEXT, BINARY) and not opcode:
                return _new_message((frame_opcode, payload))  # one whole frame
            if frame_opcode >= CLOSE:
                self._control(frame_opcode, fin, payload)
                continue
            if frame_opcode not in (CONTINUATION, TEXT, BINARY):
                raise WebSocketError(f"unknown opcode {frame_opcode:#x}")
            if (frame_opcode == CONTINUATION) != bool(parts or opcode):
                raise WebSocketError("a fragmented message is out of order")
            opcode = opcode or frame_opcode
            parts.append(payload)
            total += len(payload)
            if total > MAX_MESSAGE_BYTES:
                raise WebSocketError("a message is over the size limit")
            if fin:
                return Message(opcode, b"".join(parts))
        return None

    def _control(self, opcode: int, fin: bool, payload: bytes) -> None:
        if not fin or len(payload) > 125:
            raise WebSocketError("control frames are short and never fragmented")
        if opcode == PING:
            self._send(PONG, payload)
        elif opcode == CLOSE:
            self.close_code = struct.unpack(">H", payload[:2])[0] if len(payload) >= 2 else 1005
            self._finish(self.close_code if self.close_code != 1005 else 1000)
        elif opcode != PONG:
            raise WebSocketError(f"unknown control opcode {opcode:#x}")

    def _finish(self, code: int, reason: str = "") -> None:
        if not self.closed:
            self.closed = True
            with contextlib.suppress(OSError):  # the peer may be gone already
                self.sock.sendall(encode_frame(CLOSE, struct.pack(">H", code) + reason.encode()))
        self.sock.close()

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Send a close frame and drop the connection (the peer's answer is not awaited)."""
        self._finish(code, reason[:120])


def connect(url: str, *, timeout: float = 10.0, origin: str | None = None) -> WebSocket:
    """Open `url` (ws:// or wss://). WebSocketError with the HTTP status when refused."""
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise WebSocketError(f"not a WebSocket URL: {url}")
    port = parts.port or (443 if parts.scheme == "wss" else 80)
    try:
        sock = socket.create_connection((parts.hostname, port), timeout=timeout)
        if parts.scheme == "wss":
            sock = ssl.create_default_context().wrap_socket(sock, server_hostname=parts.hostname)
    except OSError as exc:
        raise WebSocketError(f"cannot reach {parts.hostname}:{port}: {exc}") from exc
    try:
        leftover = _handshake(sock, parts.netloc, parts.path or "/", parts.query, origin)
    except BaseException:
        sock.close()
        raise
    sock.settimeout(None)
    return WebSocket(sock, leftover)


def _handshake(sock: socket.socket, host: str, path: str, query: str, origin: str | None) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    target = f"{path}?{query}" if query else path
    lines = [
        f"GET {target} HTTP/1.1", f"Host: {host}", "Upgrade: websocket",
        "Connection: Upgrade", f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13",
        "User-Agent: encedeus-cli",
    ]  # fmt: skip
    if origin:
        lines.append(f"Origin: {origin}")
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    response = bytearray()
    while b"\r\n\r\n" not in response:
        chunk = sock.recv(4096)
        if not chunk or len(response) > MAX_HEADER_BYTES:
            raise WebSocketError("the server did not answer the WebSocket handshake")
        response += chunk
    head, _, rest = bytes(response).partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    fields = status_line.split(" ", 2)
    status = int(fields[1]) if len(fields) > 1 and fields[1].isdigit() else 0
    headers = {
        name.strip().lower(): value.strip()
        for name, _, value in (line.partition(":") for line in header_lines)
    }
    if status != 101:
        detail = rest[:200].decode(errors="replace").strip()
        raise WebSocketError(f"WebSocket refused: HTTP {status} {detail}".strip(), status=status)
    if headers.get("sec-websocket-accept") != accept_key(key):
        raise WebSocketError("the server answered a wrong Sec-WebSocket-Accept")
    return rest
