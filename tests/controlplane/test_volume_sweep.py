"""The volume sweep against a real agent on the local dockerd, on SQLite and PostgreSQL:
released volumes past `delete_after` and stale copies past their grace are deleted
(a loop-mounted image included), a volume a server uses again is refused and recorded,
a directory nobody's is never touched, and a release record goes only once every node
answered without its data."""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlmodel import select

from controlplane.agents import AgentPool, NodeEndpoint, grpc_client_factory
from controlplane.db.engine import Database, create_engine
from controlplane.db.migrate import upgrade_database
from controlplane.db.tables import Deployment, Node, ReleasedVolume, Replica, User, VolumeCopy
from controlplane.db.types import utcnow
from controlplane.volumes.orphans import OrphanedVolume
from controlplane.volumes.sweep import VolumeSweep, is_due
from tests.agent.conftest import SECRET, agent_in_background, make_config, spec

pytestmark = [
    pytest.mark.docker,
    pytest.mark.skipif(os.geteuid() != 0, reason="loop mounts need root"),
    pytest.mark.skipif(shutil.which("mkfs.ext4") is None, reason="needs e2fsprogs"),
]
HOUR = timedelta(hours=1)


@dataclass
class Scene:
    database: Database
    pool: AgentPool
    volumes: Path
    node: str  # the real agent's node
    gone: str  # a node that never answers
    clock: list[datetime]

    def sweep(self) -> VolumeSweep:
        return VolumeSweep(
            self.database, self.pool, grace_seconds=3600, interval=60, clock=lambda: self.clock[0]
        )

    async def copies(self) -> dict[str, VolumeCopy]:
        async with self.database.session() as session:
            return {c.volume_id: c for c in await session.exec(select(VolumeCopy))}

    async def released(self) -> set[str]:
        async with self.database.session() as session:
            return {str(r.volume_id) for r in await session.exec(select(ReleasedVolume))}


@pytest.fixture
async def scene(database_url: str, tmp_path: Path) -> AsyncIterator[Scene]:
    await upgrade_database(database_url)
    database = Database(create_engine(database_url))
    config = make_config(tmp_path / "skyhook", f"node-{uuid.uuid4().hex[:8]}")
    node, gone = uuid.uuid4(), uuid.uuid4()
    async with database.transaction() as session:
        for node_id in (node, gone):
            session.add(Node(id=node_id, name=f"n{node_id.hex[:8]}", status="ready"))
    pool = AgentPool(client_factory=grpc_client_factory(), grace_seconds=5)
    async with agent_in_background(config) as agent:
        await pool.start()
        try:
            address = f"127.0.0.1:{agent.grpc.port}"
            await pool.sync([NodeEndpoint(str(node), address, SECRET)])
            async with asyncio.timeout(10):
                while pool.state(str(node)) != "ready":
                    await asyncio.sleep(0.02)
            volumes = Path(config.data_dir) / "volumes"
            yield Scene(database, pool, volumes, str(node), str(gone), [utcnow()])
        finally:
            await pool.close()
            await database.close()


async def _slots(scene: Scene) -> dict[str, uuid.UUID]:
    """A deployment with slot 0 on the unreachable node, slot 1 on the agent's node,
    and three released slots (one past its delete_after, one in its grace, one whose
    volume a server on the node uses again); their volume ids by name."""
    user = User(username=f"u{uuid.uuid4().hex[:8]}", email="u@example.com", password_hash="x")
    deployment = Deployment(user_id=user.id, app_name=f"a{uuid.uuid4().hex[:8]}", image="x")
    names = ("stale", "live", "due", "kept", "busy")
    ids = {name: uuid.uuid4() for name in names}
    async with scene.database.transaction() as session:
        session.add(user)
        session.add(deployment)
        for ordinal, (name, node) in enumerate([("stale", scene.gone), ("live", scene.node)]):
            replica = Replica(
                deployment_id=deployment.id,
                ordinal=ordinal,
                node_id=uuid.UUID(node),
                volume_id=ids[name],
            )
            session.add(replica)
        for ordinal, name in enumerate(("due", "kept", "busy"), start=2):
            due = scene.clock[0] - HOUR if name != "kept" else None
            session.add(
                ReleasedVolume(
                    volume_id=ids[name],
                    deployment_id=deployment.id,
                    ordinal=ordinal,
                    released_at=scene.clock[0],
                    delete_after=due,
                )
            )
    return ids


async def test_due_copies_go_and_the_rest_stay(scene: Scene) -> None:
    ids = await _slots(scene)
    client = scene.pool.client(scene.node)
    # The released volume with a disk limit: a loop-mounted image left by its server.
    due = spec("true", volume_id=str(ids["due"]))
    due.resources.disk_bytes = 16 << 20
    await client.create_server(due, start=False)
    await client.remove_server(due.id)
    busy = spec("sleep 60", volume_id=str(ids["busy"]))
    busy.stop.timeout_seconds = 1
    await client.create_server(busy, start=False)
    for name in ("stale", "live", "kept"):
        (scene.volumes / str(ids[name])).mkdir()
    (scene.volumes / "stray").mkdir()  # nobody's

    await scene.sweep().sweep_once()
    assert not (scene.volumes / str(ids["due"])).exists()
    left = {p.name for p in scene.volumes.iterdir()}
    assert left == {"stray", *(str(ids[n]) for n in ("stale", "live", "kept", "busy"))}
    copies = await scene.copies()
    assert copies[str(ids["due"])].deleted_at == scene.clock[0]
    assert copies[str(ids["stale"])].deleted_at is None  # found now: its grace starts
    refused = copies[str(ids["busy"])]
    assert (refused.deleted_at, refused.attempts) == (None, 1)
    assert "used by a server" in (refused.last_error or "")
    # A node did not answer: it may hold the released data, the records stay.
    assert len(await scene.released()) == 3

    scene.clock[0] += 2 * HOUR
    await scene.sweep().sweep_once()
    assert not (scene.volumes / str(ids["stale"])).exists()  # its grace passed
    assert not (scene.volumes / str(ids["kept"])).exists()  # so did this one's
    left = {p.name for p in scene.volumes.iterdir()}
    assert left == {"stray", str(ids["live"]), str(ids["busy"])}
    assert len(await scene.released()) == 3

    async with scene.database.transaction() as session:
        await session.delete(await session.get(Node, uuid.UUID(scene.gone)))
    await scene.sweep().sweep_once()
    released = await scene.released()
    assert released == {str(ids["busy"])}  # still held here: kept, tried again
    copies = await scene.copies()
    assert copies[str(ids["busy"])].attempts == 3


def test_a_stale_copy_of_a_slot_waiting_unplaced_is_never_due() -> None:
    now = utcnow()
    orphan = OrphanedVolume(
        volume_id="v", node_id="n", disk_limit_bytes=0, used_bytes=0, deployment_id="d", ordinal=0
    )
    found = {("v", "n"): VolumeCopy(volume_id="v", node_id=uuid.uuid4(), found_at=now - 2 * HOUR)}
    assert is_due(orphan, found, {"v"}, now, HOUR)
    assert not is_due(orphan, found, set(), now, HOUR)  # its slot is placed nowhere
    assert not is_due(orphan, {}, {"v"}, now, HOUR)  # first seen now
    nobodys = orphan.model_copy(update={"deployment_id": None})
    assert not is_due(nobodys, found, {"v"}, now, HOUR)
