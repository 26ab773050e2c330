"""Per-client request budgets for the endpoints that attackers hammer."""

from __future__ import annotations

import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable


class SlidingWindowLimiter:
    """At most `limit` hits per `window` seconds for each key (e.g. a client address).

    Memory is bounded: past `max_keys` distinct keys the least recently seen is
    forgotten. Not shared between processes.
    """

    def __init__(
        self,
        limit: int,
        window: float,
        *,
        max_keys: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.window = window
        self._max_keys = max_keys
        self._clock = clock
        self._hits: OrderedDict[str, deque[float]] = OrderedDict()

    def retry_after(self, key: str) -> float | None:
        """None when one more hit on `key` would be allowed, else the seconds until it
        would be; records nothing."""
        hits = self._hits.get(key)
        return None if hits is None else self._wait(hits, self._clock())

    def hit(self, key: str) -> float | None:
        """Record one request; None when allowed, else the seconds until it would be."""
        now = self._clock()
        hits = self._hits.get(key)
        if hits is None:
            hits = deque()
            self._hits[key] = hits
            if len(self._hits) > self._max_keys:
                self._hits.popitem(last=False)
        else:
            self._hits.move_to_end(key)
        wait = self._wait(hits, now)
        if wait is None:
            hits.append(now)
        return wait

    def _wait(self, hits: deque[float], now: float) -> float | None:
        """Forget hits older than the window; the seconds until the next is allowed."""
        while hits and hits[0] <= now - self.window:
            hits.popleft()
        if len(hits) >= self.limit:
            return max(hits[0] + self.window - now, 0.0)
        return None


def retry_after_header(seconds: float) -> str:
    """Retry-After value: whole seconds, at least 1."""
    return str(max(1, math.ceil(seconds)))
