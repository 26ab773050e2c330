"""Who may run beside a reconciler pass: nobody. API changes that act on agents
themselves (deleting a deployment or a node) must not overlap a pass, which could
recreate what they remove from rows it loaded before; they need no exclusion among
themselves (each acts on its own rows and containers), so they run side by side.

A pass waits until no change is inside; a change that arrives while a pass waits goes
after it, so a steady stream of changes cannot starve reconciliation.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable


class PassGate:
    """A readers-writer gate on one event loop: changes share it, a pass holds it
    alone, and a waiting pass goes before later changes. Leaving is synchronous (no
    await: a cancelled holder cannot leave the gate held)."""

    def __init__(self) -> None:
        self._changes = 0
        self._pass_running = False
        self._passes_waiting = 0
        self._waiters: list[asyncio.Future[None]] = []

    @contextlib.asynccontextmanager
    async def change(self) -> AsyncIterator[None]:
        """Inside: no pass runs (other changes may)."""
        await self._until(lambda: not self._pass_running and self._passes_waiting == 0)
        self._changes += 1
        try:
            yield
        finally:
            self._changes -= 1
            self._wake_all()

    @contextlib.asynccontextmanager
    async def one_pass(self) -> AsyncIterator[None]:
        """Inside: nothing else (no change, no other pass)."""
        self._passes_waiting += 1
        try:
            await self._until(lambda: not self._pass_running and self._changes == 0)
        finally:
            self._passes_waiting -= 1
            self._wake_all()  # a pass that gave up lets the changes behind it in
        self._pass_running = True
        try:
            yield
        finally:
            self._pass_running = False
            self._wake_all()

    async def _until(self, ready: Callable[[], bool]) -> None:
        while not ready():
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)

    def _wake_all(self) -> None:
        """Every waiter looks at the state again."""
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)
