"""The local terminal for `encedeus exec` and `console`: its size, raw or line mode
for the session's length, and resize notices (SIGWINCH) a select() loop can wait on."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import termios
import tty
from collections.abc import Iterator

LEAVE_KEY = b"\x1d"  # Ctrl-], as telnet's escape


def is_terminal(fd: int) -> bool:
    return os.isatty(fd)


def terminal_size(fd: int) -> tuple[int, int]:
    """(rows, columns) of the terminal on `fd`; 24x80 when it is not one."""
    try:
        size = os.get_terminal_size(fd)
    except OSError:
        return 24, 80
    return max(size.lines, 1), max(size.columns, 1)


@contextlib.contextmanager
def raw_mode(fd: int) -> Iterator[None]:
    """Raw mode (every key straight through, no echo, no signals) until exit."""
    if not is_terminal(fd):
        yield
        return
    saved = termios.tcgetattr(fd)
    try:
        tty.setraw(fd, termios.TCSANOW)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


@contextlib.contextmanager
def line_mode_with_leave_key(fd: int) -> Iterator[None]:
    """The terminal's own line editing, with Ctrl-] also ending a line (VEOL), so that
    a read returns at once when it is typed."""
    if not is_terminal(fd):
        yield
        return
    saved = termios.tcgetattr(fd)
    changed = termios.tcgetattr(fd)
    changed[6][termios.VEOL] = LEAVE_KEY
    try:
        termios.tcsetattr(fd, termios.TCSANOW, changed)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


@contextlib.contextmanager
def resize_notices() -> Iterator[int]:
    """A file descriptor that becomes readable when the terminal is resized."""
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    os.set_blocking(read_end, False)
    previous = signal.getsignal(signal.SIGWINCH)

    def notice(signum: int, frame: object) -> None:
        with contextlib.suppress(BlockingIOError):
            os.write(write_end, b"w")

    signal.signal(signal.SIGWINCH, notice)
    try:
        yield read_end
    finally:
        signal.signal(signal.SIGWINCH, previous)
        os.close(read_end)
        os.close(write_end)


def drain(fd: int) -> None:
    """Empty a non-blocking pipe of notices."""
    with contextlib.suppress(BlockingIOError):
        while os.read(fd, 512):
            pass


def write_out(data: bytes) -> None:
    """Write bytes to stdout now (in raw mode there is no line buffering to wait for)."""
    out = sys.stdout.buffer
    out.write(data)
    out.flush()
