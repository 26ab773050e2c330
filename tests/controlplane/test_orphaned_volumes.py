"""Which data directories a node reports that no slot placed there points at. Pure."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from controlplane.db.tables import ReleasedVolume, Replica
from controlplane.volumes.orphans import orphaned_on
from protos import agent_pb2 as pb

NODE_A, NODE_B = uuid.uuid4(), uuid.uuid4()


def test_stale_copies_of_moved_slots_and_unknown_directories_are_listed() -> None:
    deployment = uuid.uuid4()
    here = Replica(deployment_id=deployment, ordinal=0, node_id=NODE_A)
    moved = Replica(deployment_id=deployment, ordinal=1, node_id=NODE_B, volume_id=uuid.uuid4())
    task = str(uuid.uuid4())
    listed = [
        pb.VolumeInfo(id=str(here.id)),  # in use here (a slot from before volume ids)
        pb.VolumeInfo(id=str(moved.volume_id), disk_limit_bytes=2**30, used_bytes=5),
        pb.VolumeInfo(id="left-by-an-old-replica"),
        pb.VolumeInfo(id=task),  # a task's work directory
    ]
    found = orphaned_on(str(NODE_A), listed, [here, moved], {task})
    assert [(v.volume_id, v.deployment_id, v.ordinal) for v in found] == [
        (str(moved.volume_id), str(deployment), 1),
        ("left-by-an-old-replica", None, None),
    ]
    assert (found[0].disk_limit_bytes, found[0].used_bytes) == (2**30, 5)
    # On the node the slot runs on now, its volume is in use.
    assert orphaned_on(str(NODE_B), listed[1:2], [here, moved], set()) == []


def test_released_volumes_say_when_they_may_be_removed() -> None:
    deployment = uuid.uuid4()
    gone = Replica(deployment_id=deployment, ordinal=3, node_id=NODE_A)
    scaled_down = ReleasedVolume.of(gone, None)
    deleted = ReleasedVolume.of(
        Replica(deployment_id=deployment, ordinal=4, node_id=NODE_A), None, datetime.now(UTC)
    )
    listed = [pb.VolumeInfo(id=str(r.volume_id)) for r in (scaled_down, deleted)]
    released = {str(r.volume_id): r for r in (scaled_down, deleted)}
    found = orphaned_on(str(NODE_A), listed, [], set(), released, timedelta(days=7))
    assert [(v.deployment_id, v.ordinal) for v in found] == [
        (str(deployment), 3),
        (str(deployment), 4),
    ]
    assert found[0].delete_after == scaled_down.released_at + timedelta(days=7)
    assert found[1].delete_after == deleted.delete_after
