"""The reconciler writes the nodes' `last_seen` and host stats for the whole fleet in
one statement per interval, not one statement per node (bench/fleet_scale.py: these
writes were a third of the control plane's CPU while a fleet only heartbeats)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import event
from sqlmodel import col, select

from controlplane.db.tables import Node
from controlplane.reconciler import node_writes
from tests.controlplane.reconciler_harness import ReconcilerHarness


async def test_node_rows_are_written_in_one_statement_per_interval(
    harness: ReconcilerHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    node_ids = [await harness.add_node(f"n{n}") for n in range(4)]
    statements: list[tuple[str, bool]] = []

    def record(_conn: Any, _cursor: Any, sql: str, _params: Any, _ctx: Any, many: bool) -> None:
        if sql.lstrip().upper().startswith("UPDATE NODES"):
            statements.append((sql, many))

    engine = harness.database.engine.sync_engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        monkeypatch.setattr(node_writes, "NODE_WRITE_INTERVAL", 0.0)  # every pass is due
        before = {n: harness.pool.liveness.last_heard(n) or 0.0 for n in node_ids}
        await harness.reconciler.reconcile_once()
    finally:
        event.remove(engine, "before_cursor_execute", record)

    assert len(statements) == 1, statements
    assert statements[0][1]  # one executemany for the four nodes
    async with harness.database.session() as session:
        rows = (
            await session.exec(select(Node).where(col(Node.id).in_(map(uuid.UUID, node_ids))))
        ).all()
    for row in rows:
        heard = harness.pool.liveness.last_heard(str(row.id))  # still heartbeating
        assert heard is not None
        assert row.last_seen is not None
        assert before[str(row.id)] - 0.001 <= row.last_seen.timestamp() <= heard + 0.001
