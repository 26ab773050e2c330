"""The nodes' rows (liveness `status`, `last_seen`, host stats) as the reconciler's
passes write them from what the agents' pool observed: for the whole fleet in one
statement per set of columns, not one per node (bench/fleet_scale.py: per-node writes
were a third of the control plane's CPU while a fleet only heartbeats)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from google.protobuf.json_format import MessageToDict
from sqlalchemy import bindparam, update

from controlplane.agents import AgentPool
from controlplane.db.engine import Database
from controlplane.db.tables import Node
from controlplane.events.bus import Event, EventBus, EventType
from controlplane.placement import Fence
from protos import agent_pb2 as pb

NODE_WRITE_INTERVAL = 5.0


class NodeWrites:
    """Writes the pool's view of the nodes into their rows, with the node_up/node_down
    events of the status changes in the same transaction (fenced when a fence is
    given), and keeps the cached rows handed to :meth:`record` as written."""

    def __init__(
        self,
        database: Database,
        pool: AgentPool,
        *,
        clock: Callable[[], float],
        bus: EventBus | None = None,
        fence: Fence | None = None,
    ) -> None:
        self.database = database
        self.pool = pool
        self._clock = clock
        self._bus = bus
        self._fence = fence
        self._written: set[str] = set()  # nodes whose last_seen was written
        self._batch_written_at = float("-inf")

    async def record(self, nodes: dict[str, Node]) -> None:
        """Write liveness changes at once, and each heard node's `last_seen` and host
        stats when first heard and then every NODE_WRITE_INTERVAL, all nodes together
        (one statement per set of columns, not one per node)."""
        now = self._clock()
        batch_due = now - self._batch_written_at >= NODE_WRITE_INTERVAL
        updates: list[tuple[Node, dict[str, object]]] = []
        for node_id, node in nodes.items():
            liveness = self.pool.state(node_id)
            if node.status == "pending" or liveness == "unknown":
                continue
            values: dict[str, object] = {}
            if liveness != node.status:
                values["status"] = liveness
            heard = self.pool.liveness.last_heard(node_id)
            if heard is not None and (batch_due or node_id not in self._written):
                values["last_seen"] = datetime.fromtimestamp(heard, UTC)
                observation = self.pool.observation(node_id)
                if observation is not None and observation.host is not None:
                    values["host_stats"] = _host_stats(observation.host)
                self._written.add(node_id)
            if values:
                updates.append((node, values))
        if batch_due:
            self._batch_written_at = now
        if not updates:
            return
        await self._write(updates)
        for node, values in updates:
            for name, value in values.items():
                setattr(node, name, value)  # the cached row, as written

    async def _write(self, updates: list[tuple[Node, dict[str, object]]]) -> None:
        """One transaction; one executemany UPDATE per distinct set of columns, and the
        node_up/node_down events of the status changes in it."""
        groups: dict[tuple[str, ...], list[dict[str, object]]] = {}
        for node, values in updates:
            row = {f"new_{name}": value for name, value in values.items()}
            groups.setdefault(tuple(sorted(values)), []).append({"node_id": node.id, **row})
        table = Node.metadata.tables[str(Node.__tablename__)]
        async with self.database.transaction() as session:
            if self._fence is not None:
                await self._fence(session)
            connection = await session.connection()
            for columns, params in groups.items():
                statement = (
                    update(table)
                    .where(table.c.id == bindparam("node_id"))
                    .values({name: bindparam(f"new_{name}") for name in columns})
                )
                await connection.execute(statement, params)
            for node, values in updates:
                if "status" in values and self._bus is not None:
                    up = values["status"] == "ready"
                    kind = EventType.NODE_UP if up else EventType.NODE_DOWN
                    event = Event(kind, node_id=str(node.id), data={"name": node.name})
                    await self._bus.record(session, event)


def _host_stats(host: pb.HostStats) -> dict[str, object]:
    return MessageToDict(host, preserving_proto_field_name=True)
