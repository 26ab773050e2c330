"""SendVolume between two real agents on loopback: a stopped server's files arrive on
the other agent with the same bytes, modes and owners, a limited volume (a loop
image) included; a running server's volume, a token for another volume or node, a
token used twice and a stream that does not match are refused, and the target then
holds nothing (the source copy never changes)."""

from __future__ import annotations

import hashlib
import os
import shutil
import time
import uuid
from pathlib import Path

import grpc
import pytest

from agent.config import AgentConfig
from agent.daemon import RunningAgent
from common.tokens import sign_server_token
from protos import agent_pb2 as pb
from protos import agent_pb2_grpc as pb_grpc
from tests.agent.conftest import AUTH, SECRET, agent_in_background, make_config, spec
from tests.agent.test_container_security import _stub

pytestmark = [
    pytest.mark.docker,
    pytest.mark.skipif(os.geteuid() != 0, reason="loop mounts need root"),
    pytest.mark.skipif(shutil.which("zstd") is None, reason="needs zstd"),
]


def _token(target: RunningAgent, volume_id: str, **overrides: object) -> str:
    values: dict[str, object] = {
        "node_id": target.identity.node_id,
        "user_id": "control-plane",
        "server_id": volume_id,
        "permissions": [],
        "scope": "transfer",
        "now": time.time() + 1,  # issued after the target started
    }
    values.update(overrides)
    return sign_server_token(SECRET, **values)  # type: ignore[arg-type]


def checksums(root: Path) -> dict[str, tuple[str, int, int]]:
    """sha256, mode and uid of every regular file beneath `root`."""
    found = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink():
            stat = path.stat()
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            found[str(path.relative_to(root))] = (digest, stat.st_mode, stat.st_uid)
    return found


async def _send(
    stub: pb_grpc.AgentAsyncStub, volume_id: str, target: RunningAgent, token: str
) -> list[pb.TransferProgress]:
    request = pb.SendVolumeRequest(
        volume_id=volume_id, target_address=f"127.0.0.1:{target.http.port}", token=token
    )
    return [p async for p in stub.SendVolume(request, metadata=AUTH)]


async def test_a_stopped_servers_volume_arrives_whole(tmp_path: Path) -> None:
    server = spec("sleep 60")
    server.volume_id = f"v{server.id}"
    server.resources.disk_bytes = 64 << 20
    server.stop.timeout_seconds = 1
    source_config = make_config(tmp_path / "a", "node-a")
    target_config = make_config(tmp_path / "b", "node-b")
    async with (
        agent_in_background(source_config) as source,
        agent_in_background(target_config) as target,
        _stub(source) as stub,
    ):
        await stub.CreateServer(pb.CreateServerRequest(spec=server, start=True), metadata=AUTH)
        volume = Path(source_config.data_dir) / "volumes" / server.volume_id
        (volume / "world").mkdir()
        (volume / "world" / "level.dat").write_bytes(os.urandom(3 << 20))
        (volume / "server.properties").write_text("motd=hi\n")
        os.chmod(volume / "server.properties", 0o640)
        (volume / "link").symlink_to("world/level.dat")
        busy = await _refused(stub, server.volume_id, target, _token(target, server.volume_id))
        assert busy.code() == grpc.StatusCode.FAILED_PRECONDITION

        await stub.StopServer(pb.StopServerRequest(id=server.id), metadata=AUTH)
        progress = await _send(stub, server.volume_id, target, _token(target, server.volume_id))
        last = progress[-1]
        assert last.done
        assert len(last.sha256) == 64
        assert last.volume_bytes >= 3 << 20
        assert last.bytes_sent > 0
        arrived = Path(target_config.data_dir) / "volumes" / server.volume_id
        assert checksums(arrived) == checksums(volume)
        assert os.readlink(arrived / "link") == "world/level.dat"
        assert not list((Path(target_config.data_dir) / "transfers").iterdir())


async def _refused(
    stub: pb_grpc.AgentAsyncStub, volume_id: str, target: RunningAgent, token: str
) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await _send(stub, volume_id, target, token)
    return refused.value


async def test_tokens_for_anything_else_are_refused_and_leave_nothing(
    tmp_path: Path, agent_config: AgentConfig
) -> None:
    volume_id = f"v{uuid.uuid4().hex[:12]}"
    target_config = make_config(tmp_path / "b", "node-b")
    async with (
        agent_in_background(agent_config) as source,
        agent_in_background(target_config) as target,
        _stub(source) as stub,
    ):
        volume = Path(agent_config.data_dir) / "volumes" / volume_id
        volume.mkdir(parents=True)
        (volume / "data").write_bytes(b"x" * 100_000)
        before = checksums(volume)
        wrong = [
            _token(target, "another-volume"),
            _token(target, volume_id, node_id="node-c"),
            _token(target, volume_id, scope="file-upload"),
            _token(target, volume_id, now=time.time() - 3600),
        ]
        for token in wrong:
            refused = await _refused(stub, volume_id, target, token)
            assert refused.code() == grpc.StatusCode.ABORTED
            assert "refused" in (refused.details() or "")
        once = _token(target, volume_id)
        await _send(stub, volume_id, target, once)
        again = await _refused(stub, volume_id, target, once)
        assert "used already" in (again.details() or "")
        arrived = Path(target_config.data_dir) / "volumes" / volume_id
        assert checksums(arrived) == before == checksums(volume)
        missing = await _refused(stub, "no-such-volume", target, _token(target, "no-such-volume"))
        assert missing.code() == grpc.StatusCode.NOT_FOUND
