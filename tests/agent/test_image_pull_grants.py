"""A private image pulled with one tenant's credentials is not handed to specs without
them (agent/fleet/pull_grants.py), against the real engine and the loopback registries
of tests/registry_support.py: no credentials re-pull and are denied, `never` is
refused, CheckImage answers as a pull would; the same credentials reuse the local
copy; anonymously pulled (public) and locally built images stay shared."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import grpc.aio
import pytest

from agent.daemon import RunningAgent
from protos import agent_pb2 as pb
from protos import agent_pb2_grpc as pb_grpc
from tests.agent.conftest import AUTH, wait_for_event
from tests.agent.test_image_pull import events, registry_spec
from tests.conftest import TEST_IMAGE
from tests.registry_support import REGISTRY_USER, private_registry, pushed_copy

pytestmark = [pytest.mark.docker]
__all__ = ["events"]  # the fixture, used by name below


async def _check(
    stub: pb_grpc.AgentAsyncStub, image: str, auth: pb.RegistryAuth | None
) -> pb.ImageAvailability.ValueType:
    request = pb.CheckImageRequest(image=image, registry_auth=auth)
    answer: pb.CheckImageResponse = await stub.CheckImage(request, metadata=AUTH)
    return answer.availability


async def _create(stub: pb_grpc.AgentAsyncStub, s: pb.ServerSpec) -> pb.Server:
    answer: pb.Server = await stub.CreateServer(
        pb.CreateServerRequest(spec=s, start=True), metadata=AUTH
    )
    return answer


async def test_a_credentialed_pull_is_not_shared_with_specs_without_those_credentials(
    agent: RunningAgent, stub: pb_grpc.AgentAsyncStub, events: AsyncIterator[pb.WatchEvent]
) -> None:
    with pushed_copy() as image:
        owner = registry_spec(image)
        assert (await _create(stub, owner)).status.state == pb.SERVER_STATE_PULLING
        await wait_for_event(events, owner.id, pb.LIFECYCLE_KIND_STARTED)

        # No credentials, if_not_present: the local copy is not used; the pull is denied.
        stranger = registry_spec(image, password=None)
        assert (await _create(stub, stranger)).status.state == pb.SERVER_STATE_PULLING
        failed = await wait_for_event(events, stranger.id, pb.LIFECYCLE_KIND_PULL_FAILED)
        assert failed.error_code == "registry_denied", failed.error_message
        # Other credentials: the same.
        guesser = registry_spec(image, password="wrong-password")
        await _create(stub, guesser)
        failed = await wait_for_event(events, guesser.id, pb.LIFECYCLE_KIND_PULL_FAILED)
        assert failed.error_code == "registry_denied", failed.error_message
        # No credentials, never (what tasks send): refused, saying why; also when the
        # image is named by the digest the owner's pull resolved.
        pinned = (await stub.GetServer(pb.GetServerRequest(id=owner.id), metadata=AUTH)).status
        for name in (image, pinned.image_digest):
            never = registry_spec(name, password=None)
            never.pull_policy = pb.PULL_POLICY_NEVER
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await _create(stub, never)
            assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION, name
            assert "other registry credentials" in str(refused.value.details())
        # CheckImage is no oracle: without the credentials it answers as the registry.
        assert await _check(stub, image, None) == pb.IMAGE_AVAILABILITY_DENIED
        assert await _check(stub, image, owner.registry_auth) == pb.IMAGE_AVAILABILITY_PRESENT

        # The same credentials use the local copy (no second pull).
        again = registry_spec(image)
        assert (await _create(stub, again)).status.state != pb.SERVER_STATE_PULLING
        await wait_for_event(events, again.id, pb.LIFECYCLE_KIND_STARTED)


async def test_anonymously_pulled_and_local_images_stay_shared(
    agent: RunningAgent, stub: pb_grpc.AgentAsyncStub, events: AsyncIterator[pb.WatchEvent]
) -> None:
    other = pb.RegistryAuth(username=REGISTRY_USER, password="anything")
    assert await _check(stub, TEST_IMAGE, other) == pb.IMAGE_AVAILABILITY_PRESENT
    with private_registry() as registry, pushed_copy(registry=registry.address, auth=None) as image:
        first = registry_spec(image, password=None)
        assert (await _create(stub, first)).status.state == pb.SERVER_STATE_PULLING
        await wait_for_event(events, first.id, pb.LIFECYCLE_KIND_STARTED)
        shared = registry_spec(image, password="anything")
        shared.pull_policy = pb.PULL_POLICY_NEVER
        assert (await _create(stub, shared)).status.state != pb.SERVER_STATE_PULLING
        await wait_for_event(events, shared.id, pb.LIFECYCLE_KIND_STARTED)
        assert await _check(stub, image, other) == pb.IMAGE_AVAILABILITY_PRESENT
