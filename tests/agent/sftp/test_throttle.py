"""LoginThrottle: growing delays, lockouts, forgetting; no I/O."""

from __future__ import annotations

from agent.sftp.throttle import LoginThrottle


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_delays_grow_then_lock_out() -> None:
    clock = Clock()
    throttle = LoginThrottle(
        free_failures=2,
        base_delay=0.5,
        max_delay=4,
        lockout_after=6,
        lockout_seconds=60,
        clock=clock,
    )
    key = ("abcd1234", "10.0.0.1")
    delays = [throttle.failure(key) for _ in range(5)]
    assert delays == [0.0, 0.0, 0.5, 1.0, 2.0]
    assert throttle.locked_for(key) == 0.0
    throttle.failure(key)
    assert throttle.locked_for(key) == 60.0
    assert throttle.locked_for(("abcd1234", "10.0.0.2")) == 0.0
    clock.now += 61
    assert throttle.locked_for(key) == 0.0
    for _ in range(6):
        throttle.failure(key)
    assert throttle.locked_for(key) == 120.0  # the second lockout lasts twice as long


def test_success_clears_and_old_keys_are_forgotten() -> None:
    clock = Clock()
    throttle = LoginThrottle(free_failures=0, forget_after=10, max_keys=2, clock=clock)
    throttle.failure("a")
    throttle.success("a")
    assert throttle.failure("a") == 0.5
    clock.now += 11
    throttle.failure("b")
    assert throttle.failure("c") > 0
    throttle.failure("d")  # over max_keys: the oldest goes
    assert len(throttle._records) <= 2
