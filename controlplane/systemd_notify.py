"""sd_notify for `Type=notify` units: READY=1 after startup, watchdog pings, STOPPING=1.

A no-op when NOTIFY_SOCKET is not set (not started by systemd).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import AsyncIterator

from aiohttp import web

from common.cancellation import cancel_and_wait


class SystemdNotifier:
    """Sends state lines to systemd's notification socket, if there is one."""

    def __init__(self, address: str | None) -> None:
        if address and address.startswith("@"):
            address = "\0" + address[1:]  # abstract socket namespace
        self._address = address

    async def notify(self, state: str) -> None:
        """Send one state line (e.g. `READY=1`); errors are ignored."""
        if not self._address:
            return
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.setblocking(False)
        with sock, contextlib.suppress(OSError):
            await asyncio.get_running_loop().sock_sendto(sock, state.encode(), self._address)


def watchdog_interval() -> float | None:
    """Half the WatchdogSec systemd asked for, in seconds (None when not asked)."""
    usec = os.environ.get("WATCHDOG_USEC")
    if not usec or not usec.isdigit():
        return None
    return int(usec) / 2_000_000


async def systemd_ctx(app: web.Application) -> AsyncIterator[None]:
    """Cleanup context, last in the list: READY once everything started, then pings."""
    notifier = SystemdNotifier(os.environ.get("NOTIFY_SOCKET"))
    await notifier.notify("READY=1")
    interval = watchdog_interval()
    pinger: asyncio.Task[None] | None = None
    if interval:

        async def ping() -> None:
            while True:
                await notifier.notify("WATCHDOG=1")
                await asyncio.sleep(interval)

        pinger = asyncio.create_task(ping(), name="systemd-watchdog")
    try:
        yield
    finally:
        await notifier.notify("STOPPING=1")
        if pinger is not None:
            await cancel_and_wait(pinger)
