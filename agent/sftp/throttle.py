"""Failed-login throttling per (server, client address): a pure state machine."""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass


@dataclass(slots=True)
class _Record:
    failures: int = 0
    lockouts: int = 0
    locked_until: float = 0.0
    last_failure: float = 0.0


class LoginThrottle:
    """Counts failed logins per key and says how long to hold a client back.

    Each failure after `free_failures` doubles a delay (from `base_delay`, at most
    `max_delay`) that the server waits before answering; every `lockout_after`
    failures lock the key out for `lockout_seconds`, doubled on each repeated lockout
    (at most one day). A success clears the key; keys quiet for `forget_after`
    seconds are dropped, and at most `max_keys` are kept (oldest dropped first).
    """

    def __init__(
        self,
        *,
        free_failures: int = 2,
        base_delay: float = 0.5,
        max_delay: float = 8.0,
        lockout_after: int = 10,
        lockout_seconds: float = 300.0,
        forget_after: float = 3600.0,
        max_keys: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._free = free_failures
        self._base = base_delay
        self._max_delay = max_delay
        self._lockout_after = lockout_after
        self._lockout_seconds = lockout_seconds
        self._forget_after = forget_after
        self._max_keys = max_keys
        self._clock = clock
        self._records: dict[Hashable, _Record] = {}

    def locked_for(self, key: Hashable) -> float:
        """Seconds the key stays locked out (0.0: not locked)."""
        record = self._records.get(key)
        if record is None:
            return 0.0
        return max(0.0, record.locked_until - self._clock())

    def failure(self, key: Hashable) -> float:
        """Record a failed login; returns the delay to impose before answering."""
        now = self._clock()
        self._forget_old(now)
        record = self._records.pop(key, None) or _Record()
        self._records[key] = record  # re-inserted: dict order is least recently failed first
        record.failures += 1
        record.last_failure = now
        if record.failures % self._lockout_after == 0:
            record.lockouts += 1
            seconds = min(self._lockout_seconds * 2 ** (record.lockouts - 1), 86_400.0)
            record.locked_until = now + seconds
        extra = record.failures - self._free
        if extra <= 0:
            return 0.0
        return float(min(self._base * 2 ** (extra - 1), self._max_delay))

    def success(self, key: Hashable) -> None:
        """A successful login clears the key's history."""
        self._records.pop(key, None)

    def _forget_old(self, now: float) -> None:
        while self._records:
            key, record = next(iter(self._records.items()))
            quiet = now - record.last_failure > self._forget_after and now >= record.locked_until
            if not quiet and len(self._records) < self._max_keys:
                break
            del self._records[key]
