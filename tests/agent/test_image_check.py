"""CheckImage against the real engine and the loopback test registry: present, pullable,
unknown tag, wrong password, unreachable, and a registry that never answers (bounded)."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from protos import agent_pb2 as pb
from protos import agent_pb2_grpc as pb_grpc
from tests.agent.conftest import AUTH
from tests.conftest import TEST_IMAGE
from tests.registry_support import REGISTRY_PASSWORD, REGISTRY_USER, pushed_copy

pytestmark = [pytest.mark.docker]


def _auth(password: str = REGISTRY_PASSWORD) -> pb.RegistryAuth:
    return pb.RegistryAuth(username=REGISTRY_USER, password=password)


async def _check(
    stub: pb_grpc.AgentAsyncStub, image: str, auth: pb.RegistryAuth | None = None, ms: int = 0
) -> pb.CheckImageResponse:
    request = pb.CheckImageRequest(image=image, registry_auth=auth, timeout_ms=ms)
    answer: pb.CheckImageResponse = await stub.CheckImage(request, metadata=AUTH)
    return answer


@pytest.fixture
def silent_registry() -> Iterator[str]:
    """An address that accepts connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    try:
        yield f"127.0.0.1:{listener.getsockname()[1]}"
    finally:
        listener.close()


async def test_check_image_tells_what_a_pull_would_meet(stub: pb_grpc.AgentAsyncStub) -> None:
    assert (await _check(stub, TEST_IMAGE)).availability == pb.IMAGE_AVAILABILITY_PRESENT
    with pushed_copy() as image:
        repository = image.rpartition(":")[0]
        pullable = await _check(stub, image, _auth())
        assert pullable.availability == pb.IMAGE_AVAILABILITY_PULLABLE
        unknown = await _check(stub, f"{repository}:no-such-tag", _auth())
        assert unknown.availability == pb.IMAGE_AVAILABILITY_NOT_FOUND
        denied = await _check(stub, image, _auth("wrong-password"))
        assert denied.availability == pb.IMAGE_AVAILABILITY_DENIED
        assert "wrong-password" not in denied.message
        anonymous = await _check(stub, image)
        assert anonymous.availability == pb.IMAGE_AVAILABILITY_DENIED
    refused = await _check(stub, "127.0.0.1:1/nothing/here:v1")
    assert refused.availability == pb.IMAGE_AVAILABILITY_UNREACHABLE


async def test_a_registry_that_never_answers_is_unreachable_in_bounded_time(
    stub: pb_grpc.AgentAsyncStub, silent_registry: str
) -> None:
    began = time.monotonic()
    answer = await _check(stub, f"{silent_registry}/silent/image:v1", ms=500)
    assert answer.availability == pb.IMAGE_AVAILABILITY_UNREACHABLE
    assert time.monotonic() - began < 3
