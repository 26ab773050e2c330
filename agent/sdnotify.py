"""The systemd notify protocol: one datagram per state change to $NOTIFY_SOCKET."""

from __future__ import annotations

import contextlib
import os
import socket


class SystemdNotifier:
    """Sends READY=1, WATCHDOG=1, STOPPING=1... to systemd; a no-op outside systemd
    (no NOTIFY_SOCKET). Sending a datagram on a local socket does not block."""

    def __init__(self, environ: dict[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        # A leading "@" names a socket in the abstract namespace.
        self._address = "\0" + address[1:] if address.startswith("@") else address
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        wanted = usec.isdigit() and (not pid or pid == str(os.getpid()))
        self.watchdog_seconds = int(usec) / 1_000_000 if wanted else 0.0

    @property
    def enabled(self) -> bool:
        return bool(self._address)

    def notify(self, state: str) -> None:
        if not self._address:
            return
        # If systemd went away there is nothing useful to do about it.
        family, kind = socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC
        with socket.socket(family, kind) as sock, contextlib.suppress(OSError):
            sock.sendto(state.encode(), self._address)
