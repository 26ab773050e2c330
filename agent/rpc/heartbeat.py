"""Which heartbeats of a Watch stream may leave the servers out
(WatchRequest.omit_unchanged_servers; docs/protocols/grpc.md, "Watch")."""

from __future__ import annotations

from collections.abc import Sequence

#: Every this many heartbeats show the servers anyway: a consumer whose own view
#: drifted (it folds in what actions answer) is set right.
FULL_HEARTBEAT_EVERY = 30


class ShownServers:
    """What one stream's heartbeats last showed of the servers."""

    def __init__(self, *, omit_unchanged: bool) -> None:
        self.omit = omit_unchanged
        self.last: Sequence[object] | None = None  # None: nothing shown yet
        self.omitted = 0  # heartbeats in a row that left the servers out

    def unchanged(self, shown: Sequence[object]) -> bool:
        """True when this heartbeat may leave out the servers `shown` stands for: they
        equal the last ones (list equality: identity first, so the agent's shared
        statuses, rebuilt whenever what they show changes, compare in nanoseconds)."""
        last, self.last = self.last, shown
        omit = (
            self.omit
            and self.omitted < FULL_HEARTBEAT_EVERY - 1
            and last is not None
            and last == shown
        )
        self.omitted = self.omitted + 1 if omit else 0
        return omit
