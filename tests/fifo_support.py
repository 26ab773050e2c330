"""Run work that might block on a FIFO, failing the test instead of hanging it."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest

T = TypeVar("T")


def finishes_within(seconds: float, work: Callable[[], T], fifo: Path) -> T:
    """`work()`'s result; the test fails when it has not returned after `seconds`.

    The work runs in a daemon thread; on a timeout the FIFO is opened from both ends
    a few times so a thread blocked opening it is released rather than left behind.
    """
    results: list[T] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(work())
        except BaseException as exc:  # handed to the test thread
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        for _ in range(4):
            os.close(os.open(fifo, os.O_RDWR | os.O_NONBLOCK))
            thread.join(0.1)
        pytest.fail(f"still blocked on the FIFO {fifo} after {seconds}s")
    if errors:
        raise errors[0]
    return results[0]
