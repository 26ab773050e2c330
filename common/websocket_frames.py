"""Server-side WebSocket frames made by hand, for the hot paths that write whole frames
straight to a connection's transport (the agent's console lines, the control plane's
event fan-out) instead of through aiohttp's per-message writer.

Such writes are synchronous and whole, so they never interleave with the frames
aiohttp itself writes for the same socket (replies, pings, close).
"""

from __future__ import annotations

import struct

_FIN_TEXT = 0x81


def text_frame(payload: bytes) -> bytes:
    """`payload` as one unmasked, uncompressed WebSocket text frame (RFC 6455 5.2;
    a server's frames are never masked, and a frame without RSV1 is uncompressed even
    where permessage-deflate was negotiated, RFC 7692 6)."""
    length = len(payload)
    if length < 126:
        header = struct.pack("!BB", _FIN_TEXT, length)
    elif length < 65536:
        header = struct.pack("!BBH", _FIN_TEXT, 126, length)
    else:
        header = struct.pack("!BBQ", _FIN_TEXT, 127, length)
    return header + payload
