"""Carrying out a reconciler pass's agent actions, and what their outcomes leave behind.

Each replica's calls run in one task, in order; at most AGENT_CONCURRENCY replicas'
at once. A replica with a call in flight is left out of later passes until it ends
(its end wakes the next pass). A failed call leaves its error (shown in the
deployment's status), whether retrying can help, and when it may be made again
(:mod:`controlplane.reconciler.retry`).
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable, Iterable, Mapping

from common.logging import get_logger
from controlplane.agents import AgentError, AgentPool
from controlplane.db.tables import Deployment, Replica
from controlplane.reconciler.model import (
    Action,
    AddReplica,
    AgentAction,
    BackoffPolicy,
    CreateServer,
    RecreateServer,
    RemoveServer,
    StartServer,
    StopServer,
)
from controlplane.reconciler.retry import FailedCalls
from controlplane.reconciler.world import Rows, server_spec
from controlplane.security.registry_credentials import RegistryCredentials
from controlplane.security.secrets import SecretUnreadable
from protos import agent_pb2 as pb

log = get_logger(__name__)
AGENT_CONCURRENCY = 16
# Agent answers that retrying the same call cannot change (bad spec, unknown image).
PERMANENT_ERRORS = frozenset({"failed_precondition", "invalid_argument"})
# Pull failures that only a change of the deployment (image, credentials) can cure;
# registry_unreachable and the rest are retried with the growing back-off.
PERMANENT_PULL_ERRORS = frozenset({"image_not_found", "registry_denied", "invalid_spec"})


def busy_replicas(
    inflight: Iterable[str], replicas: Mapping[str, Replica], actions: Iterable[Action]
) -> set[str]:
    """Replicas a pass leaves alone: those with an agent call in flight (its completion
    wakes the next pass, so no call is issued twice), and the replacements decided for
    their slots (dropping only the old replica's half of a move would run the slot
    twice)."""
    busy = set(inflight)
    slots = {
        (str(replica.deployment_id), replica.ordinal)
        for replica_id in busy
        if (replica := replicas.get(replica_id)) is not None
    }
    busy.update(
        a.replica_id
        for a in actions
        if isinstance(a, AddReplica) and (a.deployment_id, a.ordinal) in slots
    )
    return busy


def _generation(rows: Rows, replica_id: str) -> int:
    """The generation of the replica's deployment (-1 when either is gone)."""
    replica = rows.replicas.get(replica_id)
    deployment = rows.deployments.get(str(replica.deployment_id)) if replica else None
    return deployment.generation if deployment else -1


def _call_key(action: AgentAction) -> tuple[str, str]:
    return action.replica_id, type(action).__name__


class AgentCalls:
    """The agent calls started by passes; `on_finished` runs as each replica's end."""

    def __init__(
        self,
        pool: AgentPool,
        backoff: BackoffPolicy,
        clock: Callable[[], float],
        on_finished: Callable[[], None],
        registry: RegistryCredentials | None = None,
    ) -> None:
        self.pool = pool
        self.registry = registry
        self.codes: dict[str, str] = {}  # the stable code of each replica's last error
        # Replicas whose create/recreate answered "pulling": (call key, node, generation).
        self.pulling: dict[str, tuple[tuple[str, str], str, int]] = {}
        self.inflight: dict[str, asyncio.Task[None]] = {}
        self.errors: dict[str, str] = {}  # the last failure of each replica's calls
        self.permanent: set[str] = set()  # replicas whose last call cannot succeed as is
        self.failed = FailedCalls(backoff)
        self._clock = clock
        self._on_finished = on_finished
        self._slots = asyncio.Semaphore(AGENT_CONCURRENCY)

    def left_alone(self, rows: Rows, actions: list[Action], now: float) -> list[Action]:
        """`actions` without those of busy replicas and of failed calls still waiting."""
        self.failed.keep_only(set(rows.replicas))
        for gone in [r for r in self.pulling if r not in rows.replicas]:
            del self.pulling[gone]
        busy = busy_replicas(self.inflight, rows.replicas, actions)
        return [
            a
            for a in actions
            if getattr(a, "replica_id", None) not in busy
            and not (
                isinstance(a, AgentAction)
                and self.failed.waiting(_call_key(a), _generation(rows, a.replica_id), now)
            )
        ]

    def dispatch(self, rows: Rows, actions: list[AgentAction]) -> None:
        """Start the agent calls, one task per replica (its calls run in order)."""
        by_replica: dict[str, list[AgentAction]] = {}
        for action in actions:
            by_replica.setdefault(action.replica_id, []).append(action)
        for replica_id, calls in by_replica.items():
            task = asyncio.create_task(self._run(rows, calls), name=f"agent-{replica_id}")
            self.inflight[replica_id] = task
            task.add_done_callback(functools.partial(self._finished, replica_id))

    async def idle(self) -> None:
        """Wait until no call is still running."""
        while self.inflight:
            await asyncio.gather(*self.inflight.values(), return_exceptions=True)

    async def cancel(self) -> None:
        """Cancel the calls still running and wait for them to end."""
        tasks = list(self.inflight.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _finished(self, replica_id: str, _task: asyncio.Task[None]) -> None:
        self.inflight.pop(replica_id, None)
        self._on_finished()

    async def _run(self, rows: Rows, calls: list[AgentAction]) -> None:
        async with self._slots:
            for action in calls:
                try:
                    server = await self._call(rows, action)
                except AgentError as exc:
                    self._record_failure(rows, action, exc)
                    return
                if server is not None and server.status.pull.image:
                    # Not done yet: the pull's outcome arrives on the Watch stream.
                    generation = _generation(rows, action.replica_id)
                    self.pulling[action.replica_id] = (
                        _call_key(action),
                        action.node_id,
                        generation,
                    )
                    continue
                self._clear(action.replica_id)

    def _clear(self, replica_id: str) -> None:
        """A call of the replica worked: its errors and back-off are over."""
        self.errors.pop(replica_id, None)
        self.codes.pop(replica_id, None)
        self.permanent.discard(replica_id)
        self.failed.succeeded(replica_id)

    def pull_succeeded(self, replica_id: str) -> None:
        """The node pulled the replica's image: its failures are over."""
        if self.pulling.pop(replica_id, None) is not None:
            self._clear(replica_id)

    def pull_failed(self, replica_id: str, code: str, message: str) -> None:
        """The node could not pull the replica's image: the call that asked for it
        failed, with the back-off of any failed call (the cap at once when only a
        change of the deployment can help)."""
        pending = self.pulling.pop(replica_id, None)
        if pending is None:
            return
        key, node_id, generation = pending
        log.warning("image_pull_failed", node_id=node_id, replica_id=replica_id, code=code)
        self.errors[replica_id], self.codes[replica_id] = message, code
        permanent = code in PERMANENT_PULL_ERRORS
        if permanent:
            self.permanent.add(replica_id)
        self.failed.failed(key, node_id, generation, self._clock(), permanent=permanent)

    def _record_failure(self, rows: Rows, action: AgentAction, exc: AgentError) -> None:
        log.warning(
            "agent_action_failed",
            action=type(action).__name__,
            node_id=action.node_id,
            replica_id=action.replica_id,
            code=exc.code,
            error=exc.message,
        )
        self.errors[action.replica_id] = exc.message
        self.codes[action.replica_id] = f"agent_{exc.code}"
        permanent = exc.code in PERMANENT_ERRORS
        if permanent:
            self.permanent.add(action.replica_id)
        generation = _generation(rows, action.replica_id)
        self.failed.failed(
            _call_key(action), action.node_id, generation, self._clock(), permanent=permanent
        )

    def registry_password(self, deployment: Deployment) -> str | None:
        """The opened password of the deployment's registry credentials, if any."""
        sealed = deployment.registry_password_sealed
        if sealed is None or self.registry is None:
            return None
        try:
            return self.registry.open(sealed, deployment.id)
        except SecretUnreadable as exc:
            raise AgentError("failed_precondition", f"registry credentials: {exc}") from None

    async def _call(self, rows: Rows, action: AgentAction) -> pb.Server | None:
        """Carry out `action`; the server the agent answered with, when it did."""
        client = self.pool.client(action.node_id)
        node_id, replica_id = action.node_id, action.replica_id
        if isinstance(action, CreateServer | RecreateServer):
            replica = rows.replicas[replica_id]
            deployment = rows.deployments[str(replica.deployment_id)]
            password = self.registry_password(deployment)
            spec = server_spec(deployment, replica, node_id, password)
        if isinstance(action, RecreateServer):
            try:
                server = await client.recreate_server(spec, start=deployment.running)
            except AgentError as exc:
                if exc.code != "unimplemented":
                    raise  # refused: the old container runs on
            else:
                self.pool.record_server(node_id, server.status)
                return server
        if isinstance(action, RemoveServer | RecreateServer):
            try:
                delete_data = isinstance(action, RemoveServer) and action.delete_data
                await client.remove_server(replica_id, delete_data=delete_data)
            except AgentError as exc:
                if exc.code != "not_found":
                    raise
            self.pool.forget_server(node_id, replica_id)
            if isinstance(action, RemoveServer):
                return None
        if isinstance(action, CreateServer | RecreateServer):
            start = action.start if isinstance(action, CreateServer) else deployment.running
            try:
                began = time.perf_counter()
                server = await client.create_server(spec, start=start)
                log.debug(
                    "server_created",
                    replica_id=replica_id,
                    seconds=round(time.perf_counter() - began, 3),
                    state=server.status.state,
                )
            except AgentError as exc:
                if exc.code != "already_exists":
                    raise
                server = await client.get_server(replica_id)
            self.pool.record_server(node_id, server.status)
            return server
        if isinstance(action, StartServer):
            self.pool.record_server(node_id, (await client.start_server(replica_id)).status)
        elif isinstance(action, StopServer):
            self.pool.record_server(node_id, (await client.stop_server(replica_id)).status)
        return None
