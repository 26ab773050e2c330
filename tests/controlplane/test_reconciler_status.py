"""Status derivation (reconciler/status.py), pure: what the reconciler records and
what GET …/status answers come from the same functions."""

from __future__ import annotations

from controlplane.reconciler.model import RecordCrash, Unschedulable
from controlplane.reconciler.status import (
    FAILING_STREAK,
    UNSCHEDULABLE_ERROR,
    CallOutcomes,
    DeploymentReport,
    RecordedStatus,
    deployment_reports,
    deployment_status,
    next_recorded,
    observed_status,
)
from tests.controlplane.test_reconciler import NOW, crashed, deployment, node, replica, running
from tests.controlplane.test_reconciler import world as world_of_parts


def test_running_needs_every_replica_ready_at_the_current_generation() -> None:
    d = deployment(replicas=2, generation=2)
    r0, r1 = replica("a", 0, "n1"), replica("b", 1, "n1")
    assert deployment_status(d, [(r0, running("a", 2)), (r1, running("b", 2))]) == "running"
    assert deployment_status(d, [(r0, running("a", 2)), (r1, running("b", 1))]) == "updating"
    assert deployment_status(d, [(r0, running("a", 2)), (r1, None)]) == "pending"
    assert deployment_status(deployment(running=False), [(r0, None)]) == "stopped"


def test_failed_when_crash_looping_exited_for_good_or_unschedulable() -> None:
    d = deployment(replicas=1)
    looping = replica("a", 0, "n1", crash_streak=FAILING_STREAK)
    assert deployment_status(d, [(looping, None)]) == "failed"
    never = deployment(replicas=1, restart_policy="never")
    done = crashed("a", int(NOW * 1000))
    assert deployment_status(never, [(replica("a", 0, "n1"), done)]) == "failed"
    assert deployment_status(d, [], unschedulable=True) == "failed"


def test_reports_judge_by_the_crash_counts_the_pass_just_wrote() -> None:
    w = world_of_parts([replica("a", 0, "n1", crash_streak=2)], [node("n1", {})])
    crash = RecordCrash("a", 3, FAILING_STREAK, 1, NOW + 1)
    assert deployment_reports(w, [], CallOutcomes())["d1"].status == "pending"
    assert deployment_reports(w, [crash], CallOutcomes())["d1"].status == "failed"


def test_reports_word_the_error_and_fail_on_refusals_retrying_cannot_fix() -> None:
    w = world_of_parts([replica("a", 0, "n1")], [node("n1", {})], deployment(replicas=1))
    refused = CallOutcomes(errors={"a": "no such image"}, permanent={"a"})
    assert deployment_reports(w, [], refused)["d1"] == DeploymentReport("failed", "no such image")
    transient = CallOutcomes(errors={"a": "unavailable"})
    assert deployment_reports(w, [], transient)["d1"] == DeploymentReport("pending", "unavailable")
    nowhere = deployment_reports(w, [Unschedulable("d1", 0, "x")], CallOutcomes())["d1"]
    assert nowhere == DeploymentReport("failed", UNSCHEDULABLE_ERROR)


def test_deployed_at_is_stamped_once_with_the_injected_clock() -> None:
    pending = RecordedStatus("pending", None, None)
    first = next_recorded(pending, DeploymentReport("running", None), now=42.0)
    assert first == RecordedStatus("running", None, 42.0)
    assert next_recorded(first, DeploymentReport("running", None), now=99.0) is None
    again = next_recorded(
        RecordedStatus("updating", None, 42.0), DeploymentReport("running", None), 99.0
    )
    assert again is not None
    assert again.deployed_at == 42.0


def test_an_error_stays_until_another_replaces_it() -> None:
    failed = RecordedStatus("failed", "no such image", None)
    assert next_recorded(failed, DeploymentReport("failed", None), 1.0) is None
    assert next_recorded(failed, DeploymentReport("pending", None), 1.0) == RecordedStatus(
        "pending", "no such image", None
    )


def test_the_api_status_follows_the_replicas_it_counts() -> None:
    d = deployment(replicas=1)
    ready = [(replica("a", 0, "n1"), running("a"))]
    # The row still says pending (the pass has not run yet): the answer says running.
    assert observed_status(d, ready, recorded="pending") == "running"
    assert observed_status(d, [(replica("a", 0, "n1"), None)], recorded="running") == "pending"
    # What only the reconciler knows (no room, a refused spec) is kept.
    assert observed_status(d, [], recorded="failed") == "failed"
