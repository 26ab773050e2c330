"""Password-guessing throttle: attempts are reserved BEFORE the password is checked.

A pure state machine shared by the control plane's HTTP login and SFTP credential
check and by the agent's SFTP server. Counting a failure only after verification let
20 parallel guesses all be verified against a limit of 10; here
:meth:`LoginThrottle.reserve` counts the attempt as a failure up front, and the caller
then reports the outcome: :meth:`LoginReservation.succeeded` (the pair's record is
cleared and the address becomes trusted for the account),
:meth:`LoginReservation.released` (neither: e.g. the control plane was unreachable),
or nothing at all for a wrong credential (the reservation stands as the failure).

The rule — growing delays, never a lock-out that a third party can cause:

- **Pair** (account, client address), strong curve: the first 5 failures are free,
  then each next attempt waits 1 s, 2 s, 4 s, ... (at most 5 minutes) after the
  previous one. Only the guesser's own address is slowed down.
- **Account**, gentle curve, over all addresses: past 20 failures the account is
  under attack and every pair that has itself failed at least once waits
  1 s, 2 s, ... (at most 30 s) between attempts, so a botnet gets about one guess per
  address per 30 s. An address with no failure on the account, or trusted (it logged
  in to the account successfully in the last 30 days), is never slowed by it, so an
  attacker cannot lock the owner out.
- **Address**, over all accounts (password spraying): the first 30 failures are free,
  then 1 s, 2 s, ... at most 60 s between attempts from that address.

Records are forgotten after 15 minutes without an attempt; at most `max_keys` of each
kind are kept (least recently used dropped first).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class DelayCurve:
    """`free` failures cost nothing; the next ones wait `base` seconds, doubling, at
    most `cap` seconds after the previous attempt."""

    free: int
    base: float
    cap: float

    def delay(self, failures: int) -> float:
        """Seconds an attempt must wait after the previous one, given `failures`."""
        extra = failures - self.free
        if extra < 0:
            return 0.0
        return min(self.base * 2.0 ** min(extra, 60), self.cap)


PAIR_CURVE = DelayCurve(free=5, base=1.0, cap=300.0)
ACCOUNT_CURVE = DelayCurve(free=20, base=1.0, cap=30.0)
ADDRESS_CURVE = DelayCurve(free=30, base=1.0, cap=60.0)
FORGET_AFTER_SECONDS = 900.0
TRUST_SECONDS = 30 * 86_400.0


@dataclass(slots=True)
class _Failures:
    count: int = 0
    last_attempt: float = 0.0


class _Records:
    """Failure records of one kind, bounded and forgetting quiet keys."""

    def __init__(self, max_keys: int, forget_after: float) -> None:
        self._records: OrderedDict[Hashable, _Failures] = OrderedDict()
        self._max_keys, self._forget_after = max_keys, forget_after

    def get(self, key: Hashable, now: float) -> _Failures:
        record = self._records.get(key)
        if record is None or now - record.last_attempt > self._forget_after:
            record = _Failures(last_attempt=now)
            self._records[key] = record
            if len(self._records) > self._max_keys:
                self._records.popitem(last=False)
        self._records.move_to_end(key)
        return record

    def drop(self, key: Hashable) -> None:
        self._records.pop(key, None)


@dataclass(slots=True)
class LoginReservation:
    """One attempt, counted as a failure until the caller says otherwise. Report at
    most one outcome; a wrong credential needs no call."""

    throttle: LoginThrottle
    account: str
    address: str
    _settled: bool = False

    def succeeded(self) -> None:
        """The credential was right: clear the pair, trust the address, and take this
        attempt back from the account and address counts."""
        if not self._settled:
            self._settled = True
            self.throttle._succeeded(self.account, self.address)

    def released(self) -> None:
        """The credential was never judged (an outage): take the attempt back."""
        if not self._settled:
            self._settled = True
            self.throttle._released(self.account, self.address)


class LoginThrottle:
    """Reserve-then-verify throttle for password attempts (see the module docstring)."""

    def __init__(
        self,
        *,
        pair: DelayCurve = PAIR_CURVE,
        account: DelayCurve = ACCOUNT_CURVE,
        address: DelayCurve = ADDRESS_CURVE,
        forget_after: float = FORGET_AFTER_SECONDS,
        trust_seconds: float = TRUST_SECONDS,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._curves = (pair, account, address)
        self._pairs = _Records(max_keys, forget_after)
        self._accounts = _Records(max_keys, forget_after)
        self._addresses = _Records(max_keys, forget_after)
        self._trusted: OrderedDict[tuple[str, str], float] = OrderedDict()
        self._trust_seconds, self._max_keys, self._clock = trust_seconds, max_keys, clock

    def reserve(self, account: str, address: str) -> LoginReservation | float:
        """A reservation when an attempt may be verified now (it is already counted as
        a failure), else the seconds to wait (nothing is counted)."""
        now = self._clock()
        pair_curve, account_curve, address_curve = self._curves
        pair = self._pairs.get((account, address), now)
        under_attack = self._accounts.get(account, now)
        from_address = self._addresses.get(address, now)
        pair_delay = pair_curve.delay(pair.count)
        if pair.count and not self._is_trusted(account, address, now):
            pair_delay = max(pair_delay, account_curve.delay(under_attack.count))
        wait = max(
            pair.last_attempt + pair_delay - now,
            from_address.last_attempt + address_curve.delay(from_address.count) - now,
        )
        if wait > 0:
            return wait
        for record in (pair, under_attack, from_address):
            record.count += 1
            record.last_attempt = now
        return LoginReservation(self, account, address)

    def _is_trusted(self, account: str, address: str, now: float) -> bool:
        until = self._trusted.get((account, address))
        return until is not None and until > now

    def _succeeded(self, account: str, address: str) -> None:
        now = self._clock()
        self._pairs.drop((account, address))
        self._take_back(self._accounts.get(account, now), self._addresses.get(address, now))
        self._trusted[(account, address)] = now + self._trust_seconds
        self._trusted.move_to_end((account, address))
        if len(self._trusted) > self._max_keys:
            self._trusted.popitem(last=False)

    def _released(self, account: str, address: str) -> None:
        now = self._clock()
        self._take_back(
            self._pairs.get((account, address), now),
            self._accounts.get(account, now),
            self._addresses.get(address, now),
        )

    @staticmethod
    def _take_back(*records: _Failures) -> None:
        for record in records:
            record.count = max(0, record.count - 1)
