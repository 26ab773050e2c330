"""A console socket's live feed (agent/ws/console_feed.py): lines go out in the turn
they arrive, a send that must wait keeps the order for the lines behind it, a slow
client loses lines past the limit, failures and cancellation reach the feed's task."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from agent.console.history import ConsoleHistory, ConsoleLine
from agent.ws.console_feed import LiveFeed, run_until_suspended

pytestmark = pytest.mark.usefixtures("no_blocking_calls")


def _line(text: str) -> ConsoleLine:
    return ConsoleLine(0, "stdout", text)


class Socket:
    """Records what it sent; sends of the texts in `slow` wait for `drained`."""

    def __init__(self, *slow: str) -> None:
        self.sent: list[str] = []
        self.slow = set(slow)
        self.drained = asyncio.Event()
        self.cancelled: list[str] = []

    async def send(self, line: ConsoleLine) -> None:
        self.sent.append(line.text)  # the frame is written before any wait, as aiohttp's
        if line.text in self.slow:
            try:
                await self.drained.wait()
            except asyncio.CancelledError:
                self.cancelled.append(line.text)
                raise


async def test_a_line_goes_out_in_the_turn_the_history_gets_it() -> None:
    socket, history = Socket(), ConsoleHistory(10)
    feed = LiveFeed(socket.send)
    history.add_listener(feed)
    history.feed("stdout", b"one\ntwo\n")
    assert socket.sent == ["one", "two"]  # no await in between: no task hop
    history.remove_listener(feed)
    history.feed("stdout", b"three\n")
    assert socket.sent == ["one", "two"]


async def test_lines_behind_a_waiting_send_keep_their_order() -> None:
    socket = Socket("one")
    feed = LiveFeed(socket.send)
    running = asyncio.create_task(feed.run())
    for text in ("one", "two", "three"):
        feed(_line(text))
    assert socket.sent == ["one"]  # "one" waits for the socket: the others wait behind
    socket.drained.set()
    async with asyncio.timeout(5):
        while len(socket.sent) < 3:
            await asyncio.sleep(0)
    assert socket.sent == ["one", "two", "three"]
    feed(_line("four"))  # the socket drained: back to sending at once
    assert socket.sent[-1] == "four"
    running.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await running


async def test_a_slow_client_loses_the_lines_past_the_limit() -> None:
    socket = Socket("first")
    feed = LiveFeed(socket.send, limit=2)
    running = asyncio.create_task(feed.run())
    for n in range(5):
        feed(_line("first" if n == 0 else f"line {n}"))
    assert feed.dropped == 2
    socket.drained.set()
    async with asyncio.timeout(5):
        while len(socket.sent) < 3:
            await asyncio.sleep(0)
    assert socket.sent == ["first", "line 1", "line 2"]
    running.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await running


async def test_a_failed_send_fails_the_feed_s_task() -> None:
    async def broken(line: ConsoleLine) -> None:
        raise RuntimeError(f"cannot send {line.text}")

    feed = LiveFeed(broken)
    feed(_line("x"))  # the history's listener never raises
    with pytest.raises(RuntimeError, match="cannot send x"):
        async with asyncio.timeout(5):
            await feed.run()


async def test_cancelling_the_feed_cancels_the_send_that_waits() -> None:
    socket = Socket("one")
    feed = LiveFeed(socket.send)
    running = asyncio.create_task(feed.run())
    feed(_line("one"))
    await asyncio.sleep(0.01)  # run() is now awaiting the rest of "one"
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    assert socket.cancelled == ["one"]


async def test_the_rest_of_a_suspended_coroutine_returns_what_it_awaited() -> None:
    future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    got: list[int] = []

    async def waits() -> None:
        got.append(await future)

    rest = run_until_suspended(waits())
    assert rest is not None
    assert got == []
    asyncio.get_running_loop().call_later(0.01, future.set_result, 7)
    async with asyncio.timeout(5):
        await rest
    assert got == [7]
    bare_yield = run_until_suspended(asyncio.sleep(0))
    assert bare_yield is not None
    await bare_yield


async def test_lines_written_at_once_skip_the_send_until_one_cannot_be() -> None:
    socket, written, full = Socket("two"), [], {"two", "three"}

    def send_now(line: ConsoleLine) -> bool:
        if line.text in full:  # the socket's buffer holds bytes: aiohttp's path
            return False
        written.append(line.text)
        return True

    feed = LiveFeed(socket.send, send_now=send_now)
    running = asyncio.create_task(feed.run())
    for text in ("one", "two", "three", "four"):
        feed(_line(text))
    assert written == ["one"]
    assert socket.sent == ["two"]  # it waits: the lines behind it wait too, in order
    full.clear()
    socket.drained.set()
    async with asyncio.timeout(5):
        while socket.sent != ["two", "three", "four"]:
            await asyncio.sleep(0)
    feed(_line("five"))
    assert written == ["one", "five"]  # the backlog is empty again: written at once
    running.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await running
