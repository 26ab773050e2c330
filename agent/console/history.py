"""A server's recent console output and its live followers.

Used only from the event loop thread: the container's attach socket is read on the
loop (agent/runtime/docker_attach.py), which feeds each chunk in the turn that read it.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections import deque
from collections.abc import Callable
from typing import NamedTuple

MAX_LINE_BYTES = 16384  # a line longer than this is cut: output without newlines can't grow us
FOLLOWER_QUEUE = 1024


class ConsoleLine(NamedTuple):
    """One line of output, without its newline (a NamedTuple: made once per line on the
    console's hot path, where a frozen dataclass's field-by-field __init__ costs more)."""

    time_ms: int
    stream: str
    text: str


# ConsoleLine((time_ms, stream, text)) as a C call: what the NamedTuple's generated
# __new__ does, without that Python frame.
_new_line = functools.partial(tuple.__new__, ConsoleLine)


class ConsoleHistory:
    """The last `max_lines` lines of one server's output, plus followers.

    A follower is a queue receiving every new line and then None when the output ends
    (the container stopped) or when it fell more than FOLLOWER_QUEUE lines behind.
    """

    def __init__(self, max_lines: int) -> None:
        self._lines: deque[ConsoleLine] = deque(maxlen=max_lines)
        self._partial: dict[str, bytearray] = {}
        self._followers: set[asyncio.Queue[ConsoleLine | None]] = set()
        self._line_listeners: list[Callable[[ConsoleLine], None]] = []

    def add_listener(self, listener: Callable[[ConsoleLine], None]) -> None:
        """Call `listener(line)` for every complete line, in the loop turn that read it
        (e.g. the done pattern, a console socket's live feed). It must not raise."""
        self._line_listeners.append(listener)

    def remove_listener(self, listener: Callable[[ConsoleLine], None]) -> None:
        """Stop calling `listener`; a no-op when it is not listening."""
        if listener in self._line_listeners:
            self._line_listeners.remove(listener)

    def feed(self, stream: str, data: bytes, time_ms: int | None = None) -> None:
        """Append raw output; complete lines become history."""
        now = time_ms if time_ms is not None else int(time.time() * 1000)
        buffer = self._partial.get(stream)
        if not buffer and data.endswith(b"\n"):
            # Whole lines and nothing pending (the usual chunk): split once. A newline
            # byte never occurs inside a UTF-8 sequence, so decoding the chunk and then
            # splitting gives what decoding each line does. Each line is made without
            # the NamedTuple's Python-level __new__: this runs once per console line
            # (docs/performance.md, "Console latency").
            for text in data[:-1].decode("utf-8", "replace").split("\n"):
                self._append(_new_line((now, stream, text.rstrip("\r"))))
            return
        if buffer is None:
            buffer = self._partial[stream] = bytearray()
        buffer += data
        while True:
            cut = buffer.find(b"\n")
            if cut < 0:
                if len(buffer) > MAX_LINE_BYTES:
                    cut = MAX_LINE_BYTES
                else:
                    return
                raw = bytes(buffer[:cut])
                del buffer[:cut]
            else:
                raw = bytes(buffer[:cut])
                del buffer[: cut + 1]
            self._append(ConsoleLine(now, stream, raw.decode("utf-8", "replace").rstrip("\r")))

    def end(self) -> None:
        """The output ended: flush partial lines and release every follower."""
        for stream, buffer in self._partial.items():
            if buffer:
                text = bytes(buffer).decode("utf-8", "replace")
                self._append(ConsoleLine(int(time.time() * 1000), stream, text))
        self._partial.clear()
        for queue in list(self._followers):
            self._release(queue)

    def note(self, text: str) -> None:
        """Add a line written by the agent itself (e.g. "[skyhook] server marked as running")."""
        self._append(ConsoleLine(int(time.time() * 1000), "daemon", text))

    def tail(self, count: int = 0) -> list[ConsoleLine]:
        """The last `count` lines (all kept lines when 0), oldest first."""
        lines = list(self._lines)
        return lines[-count:] if count else lines

    def follow(self) -> asyncio.Queue[ConsoleLine | None]:
        """A queue of new lines, closed by None; pass it to unfollow() when done."""
        queue: asyncio.Queue[ConsoleLine | None] = asyncio.Queue(FOLLOWER_QUEUE + 1)
        self._followers.add(queue)
        return queue

    def unfollow(self, queue: asyncio.Queue[ConsoleLine | None]) -> None:
        self._followers.discard(queue)

    def _append(self, line: ConsoleLine) -> None:
        self._lines.append(line)
        for listener in tuple(self._line_listeners):  # one may stop listening meanwhile
            listener(line)
        for queue in list(self._followers):
            if queue.qsize() >= FOLLOWER_QUEUE:
                self._release(queue)  # too slow: cut it off rather than buffer without bound
            else:
                queue.put_nowait(line)

    def _release(self, queue: asyncio.Queue[ConsoleLine | None]) -> None:
        self._followers.discard(queue)
        queue.put_nowait(None)
