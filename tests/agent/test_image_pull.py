"""The agent pulls missing images (tests/registry_support.py: the real loopback
registry with htpasswd auth): CreateServer answers at once with PULLING, progress,
the digest and the outcome arrive on Watch; failures are sorted by cause."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from pathlib import Path

import docker
import grpc
import grpc.aio
import pytest

from agent.daemon import RunningAgent
from agent.fleet.image_gc import ImageCollector
from agent.fleet.pulls import DIGEST_LABEL
from protos import agent_pb2 as pb
from protos import agent_pb2_grpc as pb_grpc
from tests.agent.conftest import AUTH, ECHO, spec, wait_for_event
from tests.conftest import TEST_IMAGE
from tests.docker_support import docker_engine
from tests.registry_support import (
    REGISTRY_PASSWORD,
    REGISTRY_USER,
    RegistryProxy,
    build_layered_image,
    private_registry,
    push,
    pushed_copy,
    remove_local_copies,
)

pytestmark = [pytest.mark.docker]


def registry_spec(image: str, password: str | None = REGISTRY_PASSWORD) -> pb.ServerSpec:
    s = spec(ECHO, stop=pb.StopPolicy(command="stop"))
    s.image = image
    if password is not None:
        s.registry_auth.CopyFrom(pb.RegistryAuth(username=REGISTRY_USER, password=password))
    return s


@pytest.fixture
async def events(stub: pb_grpc.AgentAsyncStub) -> AsyncIterator[AsyncIterator[pb.WatchEvent]]:
    call = stub.Watch(pb.WatchRequest(heartbeat_interval_ms=100), metadata=AUTH)
    try:
        yield aiter(call)
    finally:
        call.cancel()


def container_labels(agent: RunningAgent, server_id: str) -> dict[str, str]:
    client = docker.from_env()
    try:
        info = client.api.inspect_container(agent.supervisor.get(server_id).container_id)
        return dict(info["Config"]["Labels"])
    finally:
        client.close()


async def test_create_pulls_with_credentials_and_reports_the_digest(
    agent: RunningAgent,
    stub: pb_grpc.AgentAsyncStub,
    events: AsyncIterator[pb.WatchEvent],
) -> None:
    with pushed_copy() as image:
        s = registry_spec(image)
        answer = await stub.CreateServer(pb.CreateServerRequest(spec=s, start=True), metadata=AUTH)
        assert answer.status.state == pb.SERVER_STATE_PULLING
        assert answer.status.pull.image == image
        assert not answer.spec.registry_auth.password
        pulled = await wait_for_event(events, s.id, pb.LIFECYCLE_KIND_PULLED)
        assert pulled.status.image_digest.startswith(image.rpartition(":")[0] + "@sha256:")
        await wait_for_event(events, s.id, pb.LIFECYCLE_KIND_STARTED)
        server = await stub.GetServer(pb.GetServerRequest(id=s.id), metadata=AUTH)
        assert server.status.state == pb.SERVER_STATE_RUNNING
        assert server.status.image_digest == pulled.status.image_digest
        assert not server.spec.registry_auth.password
        labels = await asyncio.to_thread(container_labels, agent, s.id)
        assert labels[DIGEST_LABEL] == pulled.status.image_digest
        stored = base64.b64decode(labels["encedeus.spec"])
        assert REGISTRY_PASSWORD.encode() not in stored
        await stub.RemoveServer(pb.RemoveServerRequest(id=s.id), metadata=AUTH)


async def test_servers_of_one_image_share_one_pull(
    agent: RunningAgent, stub: pb_grpc.AgentAsyncStub, events: AsyncIterator[pb.WatchEvent]
) -> None:
    runtime = agent.supervisor.runtime
    puller = runtime.puller  # type: ignore[attr-defined]
    with pushed_copy() as image:
        specs = [registry_spec(image) for _ in range(3)]
        started = puller.pulls_started
        for s in specs:
            answer = await stub.CreateServer(pb.CreateServerRequest(spec=s), metadata=AUTH)
            assert answer.status.state == pb.SERVER_STATE_PULLING
        waiting = {s.id for s in specs}
        async with asyncio.timeout(20):
            async for event in events:
                if event.lifecycle.kind == pb.LIFECYCLE_KIND_CREATED:
                    waiting.discard(event.lifecycle.server_id)
                if not waiting:
                    break
        assert puller.pulls_started == started + 1


@pytest.mark.parametrize(
    ("password", "tag", "code"),
    [
        ("wrong-password", "v1", "registry_denied"),
        (None, "v1", "registry_denied"),
        (REGISTRY_PASSWORD, "no-such-tag", "image_not_found"),
    ],
)
async def test_failed_pulls_say_why_and_leave_no_server(
    agent: RunningAgent,
    stub: pb_grpc.AgentAsyncStub,
    events: AsyncIterator[pb.WatchEvent],
    password: str | None,
    tag: str,
    code: str,
) -> None:
    with pushed_copy() as image:
        s = registry_spec(image.rpartition(":")[0] + f":{tag}", password)
        answer = await stub.CreateServer(pb.CreateServerRequest(spec=s), metadata=AUTH)
        assert answer.status.state == pb.SERVER_STATE_PULLING
        failed = await wait_for_event(events, s.id, pb.LIFECYCLE_KIND_PULL_FAILED)
        assert failed.error_code == code, failed.error_message
        assert "wrong-password" not in failed.error_message
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.GetServer(pb.GetServerRequest(id=s.id), metadata=AUTH)
        assert refused.value.code() == grpc.StatusCode.NOT_FOUND


async def test_pull_policy_never_refuses_a_missing_image(stub: pb_grpc.AgentAsyncStub) -> None:
    with pushed_copy() as image:
        s = registry_spec(image)
        s.pull_policy = pb.PULL_POLICY_NEVER
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.CreateServer(pb.CreateServerRequest(spec=s), metadata=AUTH)
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_bad_reference_is_invalid_argument(stub: pb_grpc.AgentAsyncStub) -> None:
    s = registry_spec("127.0.0.1:5000/Upper/Case:v1")
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.CreateServer(pb.CreateServerRequest(spec=s), metadata=AUTH)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_a_failed_pull_of_an_update_keeps_the_old_container(
    agent: RunningAgent, stub: pb_grpc.AgentAsyncStub, events: AsyncIterator[pb.WatchEvent]
) -> None:
    with pushed_copy() as image:
        s = registry_spec(image)
        await stub.CreateServer(pb.CreateServerRequest(spec=s, start=True), metadata=AUTH)
        await wait_for_event(events, s.id, pb.LIFECYCLE_KIND_STARTED)
        old = agent.supervisor.get(s.id).container_id
        update = registry_spec(image.rpartition(":")[0] + ":no-such-tag")
        update.id = s.id
        answer = await stub.RecreateServer(
            pb.CreateServerRequest(spec=update, start=True), metadata=AUTH
        )
        assert answer.status.state == pb.SERVER_STATE_RUNNING
        assert answer.status.pull.image == update.image
        failed = await wait_for_event(events, s.id, pb.LIFECYCLE_KIND_PULL_FAILED)
        assert failed.error_code == "image_not_found"
        assert agent.supervisor.get(s.id).container_id == old
        assert agent.supervisor.get(s.id).status().state == pb.SERVER_STATE_RUNNING
        # The same update with an image that exists replaces it once pulled.
        with pushed_copy(tag="v2") as other:
            update.image = other
            await stub.RecreateServer(
                pb.CreateServerRequest(spec=update, start=True), metadata=AUTH
            )
            await wait_for_event(events, s.id, pb.LIFECYCLE_KIND_STARTED)
            assert agent.supervisor.get(s.id).container_id != old


async def test_registry_stopped_mid_pull_is_unreachable(
    agent: RunningAgent, stub: pb_grpc.AgentAsyncStub, events: AsyncIterator[pb.WatchEvent]
) -> None:
    agent.supervisor.runtime.puller.stall_seconds = 1.0  # type: ignore[attr-defined]
    with private_registry() as registry:
        repository = f"{registry.address}/layered"
        image = await asyncio.to_thread(build_layered_image, repository, 3, 4 * 2**20)
        try:
            with docker_engine() as client:
                await asyncio.to_thread(push, client, repository, "latest", None)
        finally:
            await asyncio.to_thread(remove_local_copies, repository)
        proxy = RegistryProxy(registry, cut_after=2 * 2**20)
        port = await proxy.start()
        try:
            s = registry_spec(f"127.0.0.1:{port}/layered:latest", password=None)
            await stub.CreateServer(pb.CreateServerRequest(spec=s), metadata=AUTH)
            failed = await wait_for_event(events, s.id, pb.LIFECYCLE_KIND_PULL_FAILED, 30)
        finally:
            await proxy.close()
            await asyncio.to_thread(remove_local_copies, f"127.0.0.1:{port}/layered")
        assert proxy.cut.is_set(), image
        assert failed.error_code == "registry_unreachable", failed.error_message


async def test_image_gc_removes_only_idle_pulled_names(
    agent: RunningAgent,
    stub: pb_grpc.AgentAsyncStub,
    events: AsyncIterator[pb.WatchEvent],
    tmp_path: Path,
) -> None:
    now = [1000.0]
    collector = ImageCollector(
        agent.supervisor.runtime,
        agent.supervisor.images_in_use,
        tmp_path / "usage.json",
        unused_seconds=60,
        protected=[TEST_IMAGE],
        clock=lambda: now[0],
    )
    with pushed_copy() as image, pushed_copy(tag="v2") as kept:
        s = registry_spec(image)
        await stub.CreateServer(pb.CreateServerRequest(spec=s), metadata=AUTH)
        await wait_for_event(events, s.id, pb.LIFECYCLE_KIND_CREATED)
        assert await collector.collect_once() == []  # in use
        await stub.RemoveServer(pb.RemoveServerRequest(id=s.id), metadata=AUTH)
        now[0] += 30
        assert await collector.collect_once() == []  # idle, but not long enough
        # Pulled outside any server: not ours to remove.
        await asyncio.to_thread(pull_by_hand, kept)
        now[0] += 31
        removed = await collector.collect_once()
        repository = image.rpartition(":")[0]
        assert image in removed
        assert all(name.startswith(repository) for name in removed)
        assert await asyncio.to_thread(local_names, repository) == []
        assert await asyncio.to_thread(local_names, kept.rpartition(":")[0]) != []
        # The shared test image, also used by servers and idle, is protected.
        assert await asyncio.to_thread(local_names, TEST_IMAGE.rpartition(":")[0]) != []


def pull_by_hand(image: str) -> None:
    with docker_engine() as client:
        client.api.pull(
            image, auth_config={"username": REGISTRY_USER, "password": REGISTRY_PASSWORD}
        )


def local_names(repository: str) -> list[str]:
    with docker_engine() as client:
        return [
            name
            for found in client.api.images(name=repository)
            for name in (*(found.get("RepoTags") or ()), *(found.get("RepoDigests") or ()))
            if name.startswith(repository)
        ]
