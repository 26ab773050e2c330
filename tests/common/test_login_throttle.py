"""LoginThrottle: attempts are counted before verification; growing delays per pair,
a gentle account-wide curve that never touches clean or trusted addresses, a
per-address curve against spraying; no I/O."""

from __future__ import annotations

import pytest

from common.login_throttle import DelayCurve, LoginReservation, LoginThrottle


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def admitted(throttle: LoginThrottle, account: str, address: str) -> LoginReservation | None:
    outcome = throttle.reserve(account, address)
    return outcome if isinstance(outcome, LoginReservation) else None


def test_the_curve_is_free_then_doubles_up_to_its_cap() -> None:
    curve = DelayCurve(free=2, base=1.0, cap=5.0)
    assert [curve.delay(n) for n in range(7)] == [0.0, 0.0, 1.0, 2.0, 4.0, 5.0, 5.0]
    assert curve.delay(10**9) == 5.0


def test_parallel_attempts_are_reserved_before_any_verification(clock: Clock) -> None:
    throttle = LoginThrottle(clock=clock)
    outcomes = [throttle.reserve("alice", "10.0.0.1") for _ in range(20)]
    reserved = [o for o in outcomes if isinstance(o, LoginReservation)]
    assert len(reserved) == 5  # the pair's free failures; the rest wait
    assert all(o == 1.0 for o in outcomes if not isinstance(o, LoginReservation))


def test_delays_grow_and_a_success_clears_the_pair(clock: Clock) -> None:
    throttle = LoginThrottle(clock=clock)
    for _ in range(5):
        assert admitted(throttle, "alice", "10.0.0.1")
    waits = []
    reservations = []
    for _ in range(4):
        wait = throttle.reserve("alice", "10.0.0.1")
        assert isinstance(wait, float)
        waits.append(wait)
        clock.now += wait
        reservations.append(throttle.reserve("alice", "10.0.0.1"))
    assert waits == [1.0, 2.0, 4.0, 8.0]
    last = reservations[-1]
    assert isinstance(last, LoginReservation)
    last.succeeded()
    assert all(admitted(throttle, "alice", "10.0.0.1") for _ in range(5))


def test_a_released_attempt_is_not_a_failure(clock: Clock) -> None:
    throttle = LoginThrottle(clock=clock)
    for _ in range(50):
        reservation = admitted(throttle, "alice", "10.0.0.1")
        assert reservation is not None
        reservation.released()


def test_an_attacker_cannot_lock_the_owner_out(clock: Clock) -> None:
    throttle = LoginThrottle(clock=clock)
    # A botnet of 40 addresses trying 5 guesses each at once: past 20 failures the
    # account is under attack, and each address gets just its first guess.
    guesses = sum(
        admitted(throttle, "alice", f"10.1.0.{bot}") is not None
        for bot in range(40)
        for _ in range(5)
    )
    assert guesses == 20 + (40 - 4)
    assert throttle.reserve("alice", "10.1.0.1") == 30.0  # the account's gentle cap
    # The owner, from an address that never failed, is admitted at once...
    assert admitted(throttle, "alice", "192.0.2.7")
    # ...a second try after a typo waits the account's gentle delay, at most 30 s...
    wait = throttle.reserve("alice", "192.0.2.7")
    assert isinstance(wait, float)
    assert 0 < wait <= 30
    clock.now += wait
    owner = admitted(throttle, "alice", "192.0.2.7")
    assert owner is not None
    owner.succeeded()
    # ...and once it has logged in, its address is trusted: typos cost only the pair's.
    for _ in range(5):
        assert admitted(throttle, "alice", "192.0.2.7")


def test_spraying_many_accounts_from_one_address_is_slowed(clock: Clock) -> None:
    throttle = LoginThrottle(clock=clock)
    for n in range(30):
        assert admitted(throttle, f"user{n}", "10.0.0.9")
    assert throttle.reserve("user99", "10.0.0.9") == 1.0
    assert admitted(throttle, "user99", "10.0.0.10")  # another address is not affected


def test_records_are_forgotten_and_bounded(clock: Clock) -> None:
    throttle = LoginThrottle(clock=clock, forget_after=60, max_keys=3)
    for _ in range(5):
        assert admitted(throttle, "alice", "10.0.0.1")
    assert isinstance(throttle.reserve("alice", "10.0.0.1"), float)
    clock.now += 61
    assert admitted(throttle, "alice", "10.0.0.1")
    for n in range(10):
        admitted(throttle, f"u{n}", f"10.0.1.{n}")
    assert len(throttle._pairs._records) == 3


def test_an_outcome_is_reported_once(clock: Clock) -> None:
    throttle = LoginThrottle(clock=clock)
    first = admitted(throttle, "alice", "10.0.0.1")
    assert first is not None
    first.released()
    first.released()
    first.succeeded()
    assert throttle._accounts.get("alice", clock.now).count == 0
