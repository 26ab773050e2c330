"""Placements per second: 10,000 replicas on 1,000 simulated nodes.

Both planners place the same 1,000 deployments (10 replicas each, bin-packing) and
must place identically. `value` is the indexed planner (:class:`PlacementIndex`)
alone, `reference` the brute-force planner that scores every node for every replica,
each the best of `ROUNDS` runs on one core (CPU time of this process). The goal is
`value` >= 50,000 placements/s. `with_database` repeats both with every placement
written as a replica row into a fresh SQLite database migrated to the real schema,
one transaction per batch of 50 deployments (what one reconcile pass commits).
"""

from __future__ import annotations

import asyncio
import json
import random
import tempfile
import time
import uuid
from pathlib import Path

from sqlalchemy import Table, insert

from controlplane.db.engine import Database, create_engine
from controlplane.db.migrate import upgrade_database
from controlplane.db.tables import Deployment, Node, Replica, User
from controlplane.db.types import utcnow
from controlplane.scheduler import (
    BruteForceIndex,
    NodeCapacity,
    Placement,
    PlacementIndex,
    PlacementRequest,
    Snapshot,
)

NODES = 1000
DEPLOYMENTS = 1000
REPLICAS_EACH = 10
BATCH = 50
ROUNDS = 5
REPLICAS: Table = Replica.__table__  # type: ignore[attr-defined]
MI = 2**20


def simulated_cluster(rng: random.Random) -> tuple[Snapshot, list[PlacementRequest]]:
    nodes = [
        NodeCapacity(
            id=str(uuid.UUID(int=i + 1)),
            cpu_millis=rng.choice([4000, 8000, 16000]),
            memory_bytes=rng.choice([8192, 16384, 32768]) * MI,
            port_range=(30000, 30999),
            labels={"zone": rng.choice(["a", "b", "c"])},
        )
        for i in range(NODES)
    ]
    requests = [
        PlacementRequest(
            replica_ids=[str(uuid.uuid4()) for _ in range(REPLICAS_EACH)],
            cpu_millis=rng.choice([100, 250, 500]),
            memory_bytes=rng.choice([128, 256, 512]) * MI,
            port_count=rng.randint(0, 2),
            group=str(uuid.UUID(int=10**6 + k)),
        )
        for k in range(DEPLOYMENTS)
    ]
    return Snapshot(nodes=nodes), requests


async def prepared_database(directory: Path, snapshot: Snapshot, name: str) -> Database:
    url = f"sqlite+aiosqlite:///{directory / name}.db"
    await upgrade_database(url)
    db = Database(create_engine(url))
    owner = User(username="bench", email="bench@example.com", password_hash="-")  # noqa: S106
    async with db.transaction() as session:
        session.add(owner)
        await session.flush()
        for n in snapshot.nodes:
            session.add(Node(id=uuid.UUID(n.id), name=n.id, status="ready"))
        await session.flush()
        for k in range(DEPLOYMENTS):
            group = uuid.UUID(int=10**6 + k)
            session.add(Deployment(id=group, user_id=owner.id, app_name=f"app{k}", image="x"))
    return db


async def run(
    db: Database, index: PlacementIndex | BruteForceIndex, requests: list[PlacementRequest]
) -> tuple[float, list[Placement]]:
    placed: list[Placement] = []
    started = time.perf_counter()
    for first in range(0, len(requests), BATCH):
        rows: list[dict[str, object]] = []
        now = utcnow()
        for request in requests[first : first + BATCH]:
            plan = index.place(request)
            rows.extend(
                {
                    "id": uuid.UUID(p.replica_id),
                    "deployment_id": uuid.UUID(request.group),
                    "ordinal": ordinal,
                    "node_id": uuid.UUID(p.node_id),
                    "host_ports": list(p.host_ports),
                    "created_at": now,
                }
                for ordinal, p in enumerate(plan.placements)
            )
            placed.extend(plan.placements)
        async with db.transaction() as session:
            connection = await session.connection()
            await connection.execute(insert(REPLICAS), rows)
    return time.perf_counter() - started, placed


def planner_alone(make: type[PlacementIndex] | type[BruteForceIndex], rounds: int) -> float:
    """Placements per CPU second of the planner alone, the best of `rounds` runs."""
    best = float("inf")
    for _ in range(rounds):
        snapshot, requests = simulated_cluster(random.Random(42))
        started = time.process_time()
        index = make(snapshot)
        for request in requests:
            index.place(request)
        best = min(best, time.process_time() - started)
    return DEPLOYMENTS * REPLICAS_EACH / best


async def main() -> None:
    snapshot, requests = simulated_cluster(random.Random(42))
    total = DEPLOYMENTS * REPLICAS_EACH
    value = planner_alone(PlacementIndex, ROUNDS)
    reference = planner_alone(BruteForceIndex, 1)
    with tempfile.TemporaryDirectory() as scratch:
        directory = Path(scratch)
        fast_db = await prepared_database(directory, snapshot, "indexed")
        slow_db = await prepared_database(directory, snapshot, "brute")
        fast_s, fast = await run(fast_db, PlacementIndex(snapshot), requests)
        slow_s, slow = await run(slow_db, BruteForceIndex(snapshot), requests)
        await fast_db.close()
        await slow_db.close()
    if fast != slow or len(fast) != total:
        raise SystemExit(f"placements differ or incomplete: {len(fast)} vs {len(slow)}")
    print(f"with SQLite: indexed {fast_s:.2f}s, brute force {slow_s:.2f}s for {total} replicas")
    print(
        json.dumps(
            {
                "bench": "scheduler",
                "value": round(value, 1),
                "reference": round(reference, 1),
                "ratio": round(value / reference, 2),
                "unit": "placements/s",
                "goal": 50000,
                "with_database": {
                    "value": round(total / fast_s, 1),
                    "reference": round(total / slow_s, 1),
                },
            }
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
