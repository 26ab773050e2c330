"""What the reconciler decides from: desired state (from the database), observed
state (from the agents' heartbeats), and what it answers: actions.

Plain frozen values; no database, no network. Times are seconds since the epoch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

from controlplane.scheduler import Claim, NodeCapacity, Strategy

RestartPolicy = Literal["always", "on-failure", "never"]
RESTART_POLICIES: frozenset[str] = frozenset({"always", "on-failure", "never"})
NodeStatus = Literal["pending", "ready", "down", "draining"]
ObservedState = Literal["pulling", "offline", "starting", "running", "stopping"]
ObservedHealth = Literal["none", "starting", "healthy", "unhealthy"]
# What a slot does when its node is lost (docs/stateful.md).
NodeLossPolicy = Literal["wait", "move"]
NODE_LOSS_POLICIES: frozenset[str] = frozenset({"wait", "move"})
# A slot moved after node loss: the state of its data (`replicas.restore_state`;
# "" for every other replica). The first three keep its container stopped.
RESTORE_PENDING, RESTORING, RESTORE_FAILED = "pending", "restoring", "restore_failed"
RESTORED, STARTED_EMPTY = "restored", "empty"
AWAITING_DATA: frozenset[str] = frozenset({RESTORE_PENDING, RESTORING, RESTORE_FAILED})
#: How long a move's mark on a replica holds the reconciler off without an update.
TRANSFER_LEASE_SECONDS = 60.0

# Labels every replica container carries; the replica id is the container's identity.
LABEL_DEPLOYMENT = "encedeus.deployment"
LABEL_REPLICA = "encedeus.replica"
LABEL_GENERATION = "encedeus.generation"
LABEL_NODE = "encedeus.node"
# The deployment's app name, for people reading `docker ps`: informational, never an identity.
LABEL_APP = "encedeus.app"


@dataclass(frozen=True, slots=True)
class DesiredDeployment:
    """A deployment as its owner wants it. `generation` grows on every change of the
    container spec (image, command, env, resources, ...); replicas running an older
    generation are replaced one at a time."""

    id: str
    replicas: int
    running: bool
    generation: int
    cpu_millis: int
    memory_bytes: int
    port_count: int = 0
    disk_bytes: int = 0  # each replica's volume limit (0: none)
    restart_policy: RestartPolicy = "always"
    strategy: Strategy = "spread"
    constraints: Mapping[str, str] = field(default_factory=dict)
    run_since: float = 0.0
    """When the owner last asked it to run: exits before that were stops, not crashes."""
    on_node_loss: NodeLossPolicy = "move"
    move_after: float | None = None
    """With `wait`: move a slot whose node has been down this many seconds (None: wait
    for the node however long it takes)."""


@dataclass(frozen=True, slots=True)
class DesiredReplica:
    """One replica slot (`ordinal`) of a deployment and where it is assigned.

    `handled_exit_ms` is the finish time of the last crash already acted upon, so one
    exit is counted once; `backoff_until` is when a crashed replica may start again
    (None: nothing pending); `start_issued_at` when the last restart was sent.
    """

    id: str
    deployment_id: str
    ordinal: int
    node_id: str | None
    host_ports: tuple[int, ...] = ()
    volume_id: str = ""  # the slot's data; "" (a bare model in tests): the replica id
    restart_count: int = 0
    crash_streak: int = 0
    handled_exit_ms: int = 0
    backoff_until: float | None = None
    start_issued_at: float | None = None
    transfer_until: float | None = None
    """A move to another live node runs (controlplane/volumes/moves.py): the slot is
    the mover's until then (None: no move)."""
    awaiting_data: bool = False
    """Moved after node loss, its latest backup is not restored yet: its container is
    created stopped and is not started until the restore has an outcome
    (controlplane/reconciler/node_loss.py)."""


@dataclass(frozen=True, slots=True)
class ObservedServer:
    """A replica container as its node last reported it."""

    id: str
    state: ObservedState
    health: ObservedHealth = "none"
    generation: int = 0
    exited: bool = False
    exit_code: int = 0
    started_at_ms: int = 0
    finished_at_ms: int = 0
    pulling: bool = False
    """Its image (or its replacement's) is being pulled on the node."""

    @property
    def ready(self) -> bool:
        """Running and not failing (or not yet passing) a health check."""
        return self.state == "running" and self.health in ("none", "healthy")


@dataclass(frozen=True, slots=True)
class NodeView:
    """A node: capacity for placement, liveness, and (when it reports) its servers.

    `servers` is None when the node has not reported since the control plane
    connected: nothing is known about it, so nothing is created or removed there.
    """

    capacity: NodeCapacity
    status: NodeStatus
    servers: Mapping[str, ObservedServer] | None = None
    down_since: float | None = None
    """When a down node was last heard from (None: not down, or never heard)."""

    def for_placement(self) -> NodeCapacity:
        """The node as placement sees it: it takes new work only when ready and
        reporting (its containers are known), never while draining."""
        return replace(
            self.capacity,
            ready=self.status == "ready" and self.servers is not None,
            draining=self.status == "draining",
        )


@dataclass(frozen=True, slots=True)
class World:
    """Everything one reconcile pass looks at; `claims` is the room held on nodes by
    work other than these replicas (running tasks)."""

    deployments: Mapping[str, DesiredDeployment]
    replicas: Sequence[DesiredReplica]
    nodes: Mapping[str, NodeView]
    claims: Sequence[Claim] = ()


@dataclass(frozen=True, slots=True)
class BackoffPolicy:
    """Restart delay after the n-th consecutive crash: base * 2**(n-1), capped;
    a replica that stays up `reset_after` seconds starts counting afresh."""

    base: float = 1.0
    cap: float = 60.0
    reset_after: float = 60.0
    restart_retry: float = 15.0

    def delay(self, streak: int) -> float:
        """Seconds to wait before the restart that follows crash number `streak`."""
        return float(min(self.cap, self.base * 2 ** max(0, min(streak, 32) - 1)))


# ---- actions ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CreateServer:
    """Create (and start when `start`) the replica's container on `node_id`."""

    node_id: str
    replica_id: str
    deployment_id: str
    start: bool


@dataclass(frozen=True, slots=True)
class StartServer:
    """Start the replica's existing, stopped container."""

    node_id: str
    replica_id: str


@dataclass(frozen=True, slots=True)
class StopServer:
    """Stop the replica's container with its deployment's stop command/signal."""

    node_id: str
    replica_id: str


@dataclass(frozen=True, slots=True)
class RemoveServer:
    """Remove a container (stopping it first); data stays unless `delete_data`."""

    node_id: str
    replica_id: str
    delete_data: bool = False


@dataclass(frozen=True, slots=True)
class RecreateServer:
    """Replace the replica's container with one of the current generation."""

    node_id: str
    replica_id: str
    deployment_id: str


@dataclass(frozen=True, slots=True)
class AddReplica:
    """Record a new replica slot, already placed on `node_id` with `host_ports`.
    The caller chooses the id (the reconciler's id factory supplied it)."""

    replica_id: str
    deployment_id: str
    ordinal: int
    node_id: str
    host_ports: tuple[int, ...]
    volume_id: str = ""  # the slot's volume, carried over by a move; "": the replica id
    restore: bool = False
    """The slot's data was lost with its node: restore its latest backup on `node_id`
    before the container is created (controlplane/reconciler/node_loss.py)."""


@dataclass(frozen=True, slots=True)
class ForgetReplica:
    """Delete the replica's row (scale-down, or a move to another node); its container
    is removed separately. `released_volume` (scale-down) is the slot's volume, whose
    data is now kept for the grace period (a move keeps the volume: "")."""

    replica_id: str
    released_volume: str = ""


@dataclass(frozen=True, slots=True)
class RecordCrash:
    """Persist crash bookkeeping for a replica (see :class:`DesiredReplica`)."""

    replica_id: str
    restart_count: int
    crash_streak: int
    handled_exit_ms: int
    backoff_until: float | None
    start_issued_at: float | None = None


@dataclass(frozen=True, slots=True)
class RestoreData:
    """Restore the latest backup of a slot moved after node loss into its (stopped,
    created) container's volume on `node_id`; carried out off the pass
    (controlplane/reconciler/node_loss.py), at most once at a time per replica."""

    node_id: str
    replica_id: str


@dataclass(frozen=True, slots=True)
class Unschedulable:
    """No node can take the replica slot now; shown in the deployment's status."""

    deployment_id: str
    ordinal: int
    reason: str


@dataclass(frozen=True, slots=True)
class WaitForNode:
    """The slot waits for its lost node (`on_node_loss = "wait"`), until `move_at` when
    the deployment has a `move_after` (None: for as long as it takes)."""

    deployment_id: str
    ordinal: int
    node_id: str
    move_at: float | None = None


AgentAction = CreateServer | StartServer | StopServer | RemoveServer | RecreateServer
StateAction = AddReplica | ForgetReplica | RecordCrash | RestoreData | Unschedulable | WaitForNode
Action = AgentAction | StateAction
