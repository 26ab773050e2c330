"""A command run in a real pseudo-terminal, as a person's terminal would run it:
`setsid --ctty` makes the pty its controlling terminal, so raw mode, line editing and
SIGWINCH on a resize all behave as they do for people."""

from __future__ import annotations

import fcntl
import os
import re
import select
import struct
import subprocess
import termios
import time
from collections.abc import Mapping, Sequence


class PtyProcess:
    """A child on a pty of `rows` x `columns`; what it printed so far is `output`."""

    def __init__(
        self, argv: Sequence[str], env: Mapping[str, str], rows: int = 24, columns: int = 80
    ) -> None:
        self.master, slave = os.openpty()
        self.resize(rows, columns)
        self.process = subprocess.Popen(
            ["setsid", "--ctty", *argv], stdin=slave, stdout=slave, stderr=slave,
            env=dict(env), close_fds=True,
        )  # fmt: skip
        os.close(slave)
        self.output = b""
        self._seen = 0

    def resize(self, rows: int, columns: int) -> None:
        """Set the pty's size; the kernel sends SIGWINCH to its foreground group."""
        fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))

    def send(self, data: bytes) -> None:
        os.write(self.master, data)

    def _read(self, timeout: float) -> bool:
        ready, _, _ = select.select([self.master], [], [], timeout)
        if not ready:
            return True
        try:
            chunk = os.read(self.master, 65536)
        except OSError:  # EIO: every copy of the slave side is closed
            return False
        self.output += chunk
        return bool(chunk)

    def expect(self, pattern: bytes, timeout: float = 20.0) -> re.Match[bytes]:
        """Wait for `pattern` (a regex) in the output after the last match."""
        deadline = time.monotonic() + timeout
        regex = re.compile(pattern)
        while True:
            if match := regex.search(self.output, self._seen):
                self._seen = match.end()
                return match
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self._read(min(remaining, 0.5)):
                if match := regex.search(self.output, self._seen):
                    continue
                raise AssertionError(f"{pattern!r} not seen; output: {self.output!r}")

    def wait(self, timeout: float = 20.0) -> int:
        """The exit code, reading (and keeping) what is printed meanwhile."""
        deadline = time.monotonic() + timeout
        while self.process.poll() is None and time.monotonic() < deadline:
            self._read(0.1)
        code = self.process.wait(timeout=max(deadline - time.monotonic(), 0.1))
        while self._read(0.05):
            pass
        return code

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        os.close(self.master)
