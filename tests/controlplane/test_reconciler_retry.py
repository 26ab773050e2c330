"""Which replicas a reconciler pass leaves alone: failed calls waiting to be tried again,
and slots with a call in flight (pure bookkeeping, no agents)."""

from __future__ import annotations

import uuid

from controlplane.db.tables import Replica
from controlplane.reconciler.calls import busy_replicas
from controlplane.reconciler.model import (
    Action,
    AddReplica,
    BackoffPolicy,
    CreateServer,
    ForgetReplica,
)
from controlplane.reconciler.retry import FailedCalls

CREATE = ("r1", "CreateServer")


def test_failures_in_a_row_wait_longer_up_to_the_cap() -> None:
    calls = FailedCalls(BackoffPolicy(base=1.0, cap=5.0))
    waits = []
    for _ in range(5):
        waits.append(calls.failed(CREATE, "n1", 1, 100.0, permanent=False) - 100.0)
    assert waits == [1.0, 2.0, 4.0, 5.0, 5.0]
    assert calls.waiting(CREATE, 1, 104.9)
    assert not calls.waiting(CREATE, 1, 105.0)
    assert not calls.waiting(("r1", "RemoveServer"), 1, 101.0)  # another kind of call
    assert calls.next_retry(100.0) == 105.0
    calls.succeeded("r1")
    assert not calls.waiting(CREATE, 1, 101.0)
    assert calls.next_retry(100.0) is None


def test_permanent_refusals_wait_the_cap_and_a_new_generation_does_not_wait() -> None:
    calls = FailedCalls(BackoffPolicy(base=1.0, cap=60.0))
    assert calls.failed(CREATE, "n1", 1, 0.0, permanent=True) == 60.0
    assert calls.waiting(CREATE, 1, 30.0)
    assert not calls.waiting(CREATE, 2, 30.0)
    # A failure of the new generation counts from one again.
    assert calls.failed(CREATE, "n1", 2, 30.0, permanent=False) == 31.0


def test_a_returning_node_and_removed_replicas_clear_their_failures() -> None:
    calls = FailedCalls(BackoffPolicy(base=1.0, cap=60.0))
    calls.failed(CREATE, "n1", 1, 0.0, permanent=True)
    calls.failed(("r2", "CreateServer"), "n2", 1, 0.0, permanent=True)
    calls.node_returned("n1")
    assert not calls.waiting(CREATE, 1, 1.0)
    assert calls.waiting(("r2", "CreateServer"), 1, 1.0)
    calls.keep_only({"r1"})
    assert not calls.waiting(("r2", "CreateServer"), 1, 1.0)


def test_a_slot_with_a_call_in_flight_is_not_moved_by_halves() -> None:
    deployment_id = uuid.uuid4()
    old = Replica(deployment_id=deployment_id, ordinal=0, node_id=uuid.uuid4())
    other = Replica(deployment_id=deployment_id, ordinal=1, node_id=uuid.uuid4())
    rows = {str(old.id): old, str(other.id): other}
    move: list[Action] = [
        ForgetReplica(str(old.id)),
        AddReplica("new0", str(deployment_id), 0, "b", ()),
        CreateServer("b", "new0", str(deployment_id), True),
        AddReplica("new1", str(deployment_id), 1, "b", ()),
    ]
    # The old replica's call still runs: its replacement waits with it; slot 1 does not.
    assert busy_replicas([str(old.id)], rows, move) == {str(old.id), "new0"}
    assert busy_replicas([], rows, move) == set()
