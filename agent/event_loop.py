"""The agent's event loop: uvloop's (libuv underneath), not asyncio's default one.

A console line crosses the loop twice on its way to a client (the attach socket's
read, the console socket's send); asyncio dispatches each in Python (the selector's
wrapper, `_run_once`, the transport's read callback), uvloop in C: about 25-35 µs less
a line, which is most of the margin the console's latency goal has
(docs/performance.md, "Console latency"). The agent's code runs on either loop: its
own tests run it on this one, the control plane's tests start agents on asyncio's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

import uvloop

T = TypeVar("T")


def new_event_loop() -> asyncio.AbstractEventLoop:
    return uvloop.new_event_loop()


def run(main: Coroutine[Any, Any, T]) -> T:
    """asyncio.run on the agent's loop."""
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        return runner.run(main)
