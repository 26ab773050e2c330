"""When a failed agent call may be made again.

Without this, a call the agent refuses (an image missing on the node, a port taken)
was issued again by the very next pass, which its failure had just woken: dozens of
calls a second, each after a full reload of the tables. Each replica's failed call now
waits base * 2**(n-1) seconds (capped) after its n-th failure in a row, and the cap at
once when the agent said retrying cannot help. Only the same kind of call waits (a
failed create does not hold back the removal of that replica), and a new generation of
the deployment (the user changed the spec), or the node's agent coming back, lets it be
tried at once.
"""

from __future__ import annotations

from dataclasses import dataclass

from controlplane.reconciler.model import BackoffPolicy


@dataclass(slots=True)
class _Failure:
    count: int
    generation: int
    retry_at: float
    node_id: str


class FailedCalls:
    """Per replica: how often its agent calls failed in a row, and when to try again."""

    def __init__(self, policy: BackoffPolicy) -> None:
        self._policy = policy
        self._failures: dict[tuple[str, str], _Failure] = {}  # by (replica id, call)

    def failed(
        self, key: tuple[str, str], node_id: str, generation: int, now: float, *, permanent: bool
    ) -> float:
        """Record a failure of call `key` (replica id, call name); when it may be made
        again."""
        previous = self._failures.get(key)
        count = 1 if previous is None or previous.generation != generation else previous.count + 1
        delay = self._policy.cap if permanent else self._policy.delay(count)
        self._failures[key] = _Failure(count, generation, now + delay, node_id)
        return now + delay

    def succeeded(self, replica_id: str) -> None:
        """Any call of the replica worked: its failures are over."""
        for key in [k for k in self._failures if k[0] == replica_id]:
            del self._failures[key]

    def node_returned(self, node_id: str) -> None:
        """The node's agent is back: what failed there may be tried again at once."""
        for key in [k for k, f in self._failures.items() if f.node_id == node_id]:
            del self._failures[key]

    def waiting(self, key: tuple[str, str], generation: int, now: float) -> bool:
        """Whether call `key` must wait (a new generation never does)."""
        failure = self._failures.get(key)
        return failure is not None and failure.generation == generation and now < failure.retry_at

    def next_retry(self, now: float) -> float | None:
        """The earliest time a waiting replica may be tried again."""
        return min((f.retry_at for f in self._failures.values() if f.retry_at > now), default=None)

    def keep_only(self, replica_ids: set[str]) -> None:
        """Forget replicas that no longer exist."""
        for key in [k for k in self._failures if k[0] not in replica_ids]:
            del self._failures[key]
