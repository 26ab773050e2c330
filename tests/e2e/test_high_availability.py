"""Two control planes on one real PostgreSQL and two real agents on the real dockerd
(issue 10, "Several control planes"): deploy through A, read through B; revoke an API
key through A and it fails on B within 1 s; SIGKILL the leader in the middle of a
scale-up and the other takes over, finishes the scale-up, and creates no replica twice,
while a client that follows the survivor's notifications with its cursor receives
every event of the deployment that the log holds, in order, none twice.

The failover time (leader killed → the survivor holds the lease with the next epoch)
is measured and printed (`-s` shows it).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg  # type: ignore[import-untyped]
import pytest

from common.cancellation import cancel_and_wait
from common.ports import free_ports
from tests.conftest import TEST_IMAGE
from tests.e2e.cluster_support import (
    BIN,
    CONTROLPLANE_SETTINGS,
    PASSWORD,
    Cluster,
    Process,
    add_agent,
    eventually,
    remove_session_containers,
    session_containers,
    sign_in_admin,
    wait_healthy,
    write_config,
)

pytestmark = [pytest.mark.e2e, pytest.mark.docker]

POSTGRES = os.environ.get(
    "ENCEDEUS_TEST_POSTGRES_URL",
    "postgresql+asyncpg://encedeus:encedeus@127.0.0.1:5432/encedeus_test",
).replace("+asyncpg", "")
LOOP = "trap 'exit 0' TERM; while true; do echo tick; sleep 0.5; done"
SECRETS_KEY = "aGEtdGVzdC1zZWNyZXRzLWtleS0wMTIzNDU2Nzg5YWI="


def _database(name: str) -> str:
    return POSTGRES.rpartition("/")[0] + "/" + name


async def _admin(sql: str) -> None:
    connection = await asyncpg.connect(POSTGRES)
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


def start_member(root: Path, name: str, database_url: str) -> Cluster:
    """One `encedeus controlplane` process on the shared database."""
    [port] = free_ports(1)
    values: dict[str, object] = {
        "listen_address": "127.0.0.1",
        "port": port,
        "data_dir": str(root / name),
        "database_url": database_url,
        "jwt_secret": "ha-secret-0123456789abcdef",
        "secrets_key": SECRETS_KEY,
        "instance_name": name,
        "auth_rate_limit": 1000,
        "leader_retry_seconds": 0.5,
        "leader_probe_seconds": 0.5,
        **CONTROLPLANE_SETTINGS,
    }
    config = write_config(root / f"{name}.hcl", "controlplane", values)
    process = Process([str(BIN / "encedeus"), "controlplane", "--config", str(config)],
                      root / f"{name}.log")  # fmt: skip
    process.start()
    return Cluster(root=root, url=f"http://127.0.0.1:{port}", controlplane=process)


@dataclasses.dataclass
class Pair:
    a: Cluster
    b: Cluster
    database: str

    async def replica_rows(self, deployment_id: str, count: int) -> bool:
        """Whether the deployment has `count` replica rows."""
        connection = await asyncpg.connect(self.database)
        try:
            found = await connection.fetchval(
                "SELECT count(*) FROM replicas WHERE deployment_id = $1", uuid.UUID(deployment_id)
            )
        finally:
            await connection.close()
        return bool(found == count)

    async def newest_cursor(self) -> int:
        connection = await asyncpg.connect(self.database)
        try:
            return int(await connection.fetchval("SELECT coalesce(max(id), 0) FROM events"))
        finally:
            await connection.close()

    async def deployment_events(self, deployment_id: str) -> list[int]:
        """The cursors of every event of the deployment in the log, in order."""
        connection = await asyncpg.connect(self.database)
        try:
            rows = await connection.fetch(
                "SELECT id FROM events WHERE deployment_id = $1 ORDER BY id", deployment_id
            )
        finally:
            await connection.close()
        return [int(row["id"]) for row in rows]

    async def leader(self) -> tuple[str, int]:
        connection = await asyncpg.connect(self.database)
        try:
            row = await connection.fetchrow("SELECT leader_name, leader_epoch FROM cluster")
        finally:
            await connection.close()
        return str(row["leader_name"]), int(row["leader_epoch"])


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    root: Path = tmp_path_factory.mktemp("ha")
    name = f"enc_ha_{uuid.uuid4().hex[:12]}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    url = _database(name)
    members: list[Cluster] = []

    async def assemble() -> Pair:
        a = start_member(root, "cp-a", url)
        members.append(a)
        await wait_healthy(a)  # A migrates the new database; B starts on it after
        b = start_member(root, "cp-b", url)
        members.append(b)
        await wait_healthy(b)
        await sign_in_admin(a)
        b.token = a.token
        await add_agent(a, "node-a", (31600, 31649))
        await add_agent(a, "node-b", (31650, 31699))
        return Pair(a, b, url)

    try:
        yield asyncio.run(assemble())
    finally:
        for member in members:
            for agent in member.agents.values():
                agent.stop()
            member.controlplane.stop()
        remove_session_containers()
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


class Follower:
    """A notifications client of one control plane that resumes from its cursor."""

    def __init__(self, member: Cluster, since: int) -> None:
        self._member = member
        self.cursor = since
        self.events: list[dict[str, Any]] = []
        self.subscribed = asyncio.Event()

    async def run(self) -> None:
        url = self._member.url.replace("http", "ws", 1) + "/v1/ws/notifications"
        async with aiohttp.ClientSession() as session:
            while True:
                with contextlib.suppress(aiohttp.ClientError):
                    async with session.ws_connect(url, headers=self._member.headers) as socket:
                        await self._follow(socket)
                await asyncio.sleep(0.1)

    async def _follow(self, socket: aiohttp.ClientWebSocketResponse) -> None:
        await socket.send_json({"type": "subscribe", "topics": ["deployments"],
                                "since": self.cursor})  # fmt: skip
        async for message in socket:
            frame = message.json()
            if frame.get("type") == "subscribed":
                self.subscribed.set()
            elif "cursor" in frame:
                assert frame["cursor"] > self.cursor, "an event out of order or repeated"
                self.cursor = frame["cursor"]
                self.events.append(frame)
            else:
                assert frame.get("type") not in ("error",), frame

    async def received_up_to(self, cursor: int) -> bool:
        return self.cursor >= cursor

    def cursors_of(self, deployment_id: str) -> list[int]:
        return [e["cursor"] for e in self.events if e.get("deployment_id") == deployment_id]


async def _ready(member: Cluster, deployment_id: str, count: int, timeout: float) -> Any:
    async def check() -> Any:
        status = await member.request("GET", f"/v1/deployments/{deployment_id}/status")
        return status if status["replicas"]["ready"] == count else None

    return await eventually(check, timeout=timeout, interval=0.1)


def _containers(deployment_id: str) -> Counter[str]:
    """Containers of the deployment per replica ordinal, running or not, every node."""
    found = session_containers({"encedeus.deployment": deployment_id}, running=False)
    return Counter(c.labels["encedeus.replica"] for c in found)


async def test_deploy_through_a_read_through_b(pair: Pair) -> None:
    body = {"app_name": "ha-read", "image": TEST_IMAGE, "command": LOOP, "replicas": 2,
            "stop_timeout": 2}  # fmt: skip
    created = await pair.a.request("POST", "/v1/deployments", 201, json=body)
    deployment_id = created["id"]
    on_a = await _ready(pair.a, deployment_id, 2, timeout=60)
    # B keeps its own Watch streams: it reports the same within 2 s.
    on_b = await _ready(pair.b, deployment_id, 2, timeout=2)
    assert on_b["replicas"] == on_a["replicas"]
    nodes_a = await pair.a.request("GET", "/v1/nodes")
    nodes_b = await pair.b.request("GET", "/v1/nodes")
    assert {n["id"]: n["status"] for n in nodes_a["nodes"]} == {
        n["id"]: n["status"] for n in nodes_b["nodes"]
    }
    # A command through the follower reaches the agent directly.
    await pair.b.request("POST", f"/v1/deployments/{deployment_id}/command", 200,
                         json={"command": "echo from-b"})  # fmt: skip
    await pair.a.request("DELETE", f"/v1/deployments/{deployment_id}")


async def _refused_on_b_within_a_second(
    pair: Pair, headers: dict[str, str], revoke_through_a: Callable[[], Awaitable[object]]
) -> float:
    """Seconds from the revocation through A until B refuses `headers` (B has the
    credential in its cache before)."""
    async with aiohttp.ClientSession() as session:
        async with session.get(pair.b.url + "/v1/user/profile", headers=headers) as r:
            assert r.status == 200  # B has the credential in its cache now
        await revoke_through_a()
        revoked = time.monotonic()
        while True:
            async with session.get(pair.b.url + "/v1/user/profile", headers=headers) as r:
                if r.status == 401:
                    return time.monotonic() - revoked
            assert time.monotonic() - revoked < 1.0, "B still accepts the revoked credential"
            await asyncio.sleep(0.02)


async def test_an_api_key_revoked_through_a_fails_on_b_within_a_second(pair: Pair) -> None:
    created = await pair.a.request("POST", "/v1/api-keys", 201, json={"name": "ha"})
    key_headers = {"Authorization": f"Bearer {created['key']}"}
    seen = await _refused_on_b_within_a_second(
        pair, key_headers, lambda: pair.a.request("DELETE", f"/v1/api-keys/{created['id']}")
    )
    print(f"\nrevocation seen on B after {seen:.3f} s")


async def test_a_session_logged_out_through_a_fails_on_b_within_a_second(pair: Pair) -> None:
    login = {"username": "admin", "password": PASSWORD}
    async with (
        aiohttp.ClientSession() as session,
        session.post(pair.a.url + "/v1/auth/login", json=login) as response,
    ):
        assert response.status == 200
        token = (await response.json())["access_token"]
    headers = {"Authorization": f"Bearer {token}"}

    async def log_out_through_a() -> None:
        async with (
            aiohttp.ClientSession() as session,
            session.post(pair.a.url + "/v1/auth/logout", headers=headers) as response,
        ):
            assert response.status == 200

    seen = await _refused_on_b_within_a_second(pair, headers, log_out_through_a)
    print(f"\nlogout seen on B after {seen:.3f} s")


async def test_killing_the_leader_mid_scale_up_loses_nothing_and_duplicates_nothing(
    pair: Pair,
) -> None:
    name, epoch = await pair.leader()
    leader, survivor = (pair.a, pair.b) if name == "cp-a" else (pair.b, pair.a)
    # A client follows the survivor's notifications from the newest cursor, resuming
    # with its last cursor whenever its socket ends.
    follower = Follower(survivor, await pair.newest_cursor())
    following = asyncio.create_task(follower.run())
    await asyncio.wait_for(follower.subscribed.wait(), 10)
    body = {"app_name": "ha-scale", "image": TEST_IMAGE, "command": LOOP, "replicas": 1,
            "stop_timeout": 2}  # fmt: skip
    created = await survivor.request("POST", "/v1/deployments", 201, json=body)
    deployment_id = created["id"]
    await _ready(survivor, deployment_id, 1, timeout=60)

    # Scale up through the follower (its change wakes the leader through NOTIFY),
    # and kill the leader the moment it has committed the new replicas' placements
    # (rows first, then the agents are told): its agent calls are in flight.
    wanted = 8
    await survivor.request("PATCH", f"/v1/deployments/{deployment_id}/scale", 200,
                           json={"replicas": wanted})  # fmt: skip
    await eventually(lambda: pair.replica_rows(deployment_id, wanted), timeout=30, interval=0.005)
    leader.controlplane.kill()
    killed = time.monotonic()
    in_flight = sum(_containers(deployment_id).values())

    async def taken_over() -> bool:
        now_name, now_epoch = await pair.leader()
        return now_epoch > epoch and now_name != name

    await eventually(taken_over, timeout=15, interval=0.05)
    failover = time.monotonic() - killed
    await _ready(survivor, deployment_id, wanted, timeout=60)
    containers = _containers(deployment_id)
    print(f"\nfailover {failover:.2f} s; {in_flight} of {wanted} containers existed at the kill")
    assert failover < 15
    assert len(containers) == wanted
    assert all(count == 1 for count in containers.values()), containers
    await survivor.request("DELETE", f"/v1/deployments/{deployment_id}")
    # The client following the survivor with its cursor got every event of the
    # deployment the log holds, in order, none twice, across the failover.
    logged = await pair.deployment_events(deployment_id)
    await eventually(lambda: follower.received_up_to(logged[-1]), timeout=15, interval=0.05)
    received = follower.cursors_of(deployment_id)
    print(f"{len(received)} events of the deployment followed through the failover")
    assert received == logged
    await cancel_and_wait(following)
