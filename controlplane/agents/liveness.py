"""Node liveness as a pure state machine: events in, transitions out.

States: ``unknown`` (no heartbeat since the control plane started watching), ``ready``
(heard from within the grace period) and ``down`` (silent past the grace period).
A node that never reports after the control plane starts goes down too, after the
same grace, so its work is rescheduled even if it never comes back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

LivenessState = Literal["unknown", "ready", "down"]
DEFAULT_GRACE_SECONDS = 20.0


@dataclass(frozen=True, slots=True)
class Transition:
    """`node_id` went from `before` to `after` at `at` (seconds)."""

    node_id: str
    before: LivenessState
    after: LivenessState
    at: float


class NodeLiveness:
    """Tracks when each node was last heard from.

    :meth:`heard` records a heartbeat (or any event) and :meth:`tick` checks for
    silence; both return the transitions they caused, for the caller to publish.
    """

    def __init__(self, grace_seconds: float = DEFAULT_GRACE_SECONDS) -> None:
        self.grace = grace_seconds
        self._state: dict[str, LivenessState] = {}
        self._last: dict[str, float] = {}  # last word, or when tracking began
        self._heard: dict[str, float] = {}  # last word only

    def watch(self, node_id: str, now: float) -> None:
        """Start tracking a node (unknown until heard); idempotent."""
        if node_id not in self._state:
            self._state[node_id] = "unknown"
            self._last[node_id] = now

    def forget(self, node_id: str) -> None:
        """Stop tracking a deleted node."""
        self._state.pop(node_id, None)
        self._last.pop(node_id, None)
        self._heard.pop(node_id, None)

    def heard(self, node_id: str, now: float) -> list[Transition]:
        """The node spoke at `now`."""
        before = self._state.get(node_id, "unknown")
        self._state[node_id] = "ready"
        self._last[node_id] = max(now, self._last.get(node_id, now))
        self._heard[node_id] = self._last[node_id]
        return [] if before == "ready" else [Transition(node_id, before, "ready", now)]

    def tick(self, now: float) -> list[Transition]:
        """Nodes silent for longer than the grace period become down."""
        changes: list[Transition] = []
        for node_id, state in self._state.items():
            if state != "down" and now - self._last[node_id] > self.grace:
                changes.append(Transition(node_id, state, "down", now))
        for change in changes:
            self._state[change.node_id] = "down"
        return changes

    def state(self, node_id: str) -> LivenessState:
        """The node's current state (``unknown`` when not tracked)."""
        return self._state.get(node_id, "unknown")

    def last_heard(self, node_id: str) -> float | None:
        """When the node last spoke (None when never, since tracking began)."""
        return self._heard.get(node_id)
