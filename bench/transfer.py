"""Moving a server's data between two agents against `tar | ssh | tar` over loopback.

Two Skyhook agents run as their own processes (`skyhook --config`, node id and secret
in the config: no control plane); the source's volume holds `--size-mib` MiB of server
data (files of 16 MiB, half random bytes, half the repetitive text a world or a
database is made of). Timed: the `SendVolume` call until the target confirmed the
SHA-256 (tar, zstd, the agent-to-agent stream, unpacking on the target). Reference, in
the same run: `tar -C src -cf - . | ssh root@127.0.0.1 tar -C dst -xf -` with OpenSSH
(default options, key login) to a private sshd on another loopback port. Rounds
alternate; the best time of each counts; every copy is compared with the source.
ratio = agents' time / OpenSSH's (goal: <= 1.2). The last line is the JSON result.

    .venv/bin/python bench/transfer.py [--size-mib 1024] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import filecmp
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import asyncssh
import grpc
import grpc.aio

from agent.event_loop import run
from agent.fleet.mounts import release_mounts_beneath
from common.logging import configure_logging
from common.ports import free_ports
from common.tokens import sign_server_token
from protos import agent_pb2 as pb
from protos import agent_pb2_grpc as pb_grpc

SECRET = "bench-transfer-secret-0123456789abcdef0123"  # noqa: S105  (throwaway agents)
FILE_MIB = 16
BIN = Path(sys.executable).parent


def _make_data(root: Path, size_mib: int) -> None:
    root.mkdir(parents=True)
    words = [f"{w:08x}" for w in range(4096)]
    rng = random.Random(7)
    for index in range(max(1, size_mib // FILE_MIB)):
        path = root / f"region-{index:03d}.dat"
        if index % 2:
            path.write_bytes(os.urandom(FILE_MIB << 20))
            continue
        line = " ".join(rng.choice(words) for _ in range(64)).encode() + b"\n"
        path.write_bytes((line * ((FILE_MIB << 20) // len(line) + 1))[: FILE_MIB << 20])


def _same_tree(left: Path, right: Path) -> None:
    names = sorted(p.name for p in left.iterdir())
    if names != sorted(p.name for p in right.iterdir()):
        raise RuntimeError(f"{right}: other files than {left}")
    for name in names:
        if not filecmp.cmp(left / name, right / name, shallow=False):
            raise RuntimeError(f"{right / name} differs from the source")


def _agent(work: Path, name: str) -> tuple[subprocess.Popen[bytes], int, int]:
    grpc_port, http_port, sftp_port = free_ports(3)
    config = work / f"{name}.hcl"
    config.write_text(
        f'agent {{\n  data_dir = "{work / name}"\n  node_id = "{name}"\n'
        f'  node_secret = "{SECRET}"\n  watchdog = false\n'
        f'  grpc {{\n    host = "127.0.0.1"\n    port = {grpc_port}\n  }}\n'
        f'  http {{\n    host = "127.0.0.1"\n    port = {http_port}\n  }}\n'
        f'  sftp {{\n    host = "127.0.0.1"\n    port = {sftp_port}\n  }}\n}}\n'
    )
    log = (work / f"{name}.log").open("wb")
    process = subprocess.Popen(
        [str(BIN / "skyhook"), "--config", str(config)], stdout=log, stderr=log
    )
    log.close()
    return process, grpc_port, http_port


async def _ready(port: int, process: subprocess.Popen[bytes]) -> None:
    metadata = (("authorization", f"Bearer {SECRET}"),)
    deadline = time.monotonic() + 60
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = pb_grpc.AgentStub(channel)
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError("an agent did not start (see its log)")
            try:
                await stub.GetNodeInfo(pb.GetNodeInfoRequest(), metadata=metadata, timeout=2)
                return
            except grpc.aio.AioRpcError:
                await asyncio.sleep(0.2)
    raise RuntimeError("an agent did not answer in time")


async def _agents_move(source_grpc: int, target_http: int, volume: str) -> float:
    token = sign_server_token(
        SECRET, node_id="target", user_id="bench", server_id=volume, permissions=[],
        scope="transfer", now=time.time() + 1,
    )  # fmt: skip
    await asyncio.sleep(1.1)  # the token must be issued after the target started
    request = pb.SendVolumeRequest(
        volume_id=volume, target_address=f"127.0.0.1:{target_http}", token=token
    )
    metadata = (("authorization", f"Bearer {SECRET}"),)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{source_grpc}") as channel:
        started = time.perf_counter()
        async for progress in pb_grpc.AgentStub(channel).SendVolume(request, metadata=metadata):
            if progress.done:
                return time.perf_counter() - started
    raise RuntimeError("SendVolume ended without done")


def _sshd(work: Path) -> tuple[subprocess.Popen[bytes], int, Path]:
    [port] = free_ports(1)
    host_key, user_key = (asyncssh.generate_private_key("ssh-ed25519") for _ in range(2))
    (work / "host_key").write_bytes(host_key.export_private_key())
    (work / "id_ed25519").write_bytes(user_key.export_private_key())
    for key in ("host_key", "id_ed25519"):
        (work / key).chmod(0o600)
    (work / "authorized_keys").write_text(user_key.export_public_key().decode())
    (work / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {work / 'host_key'}\n"
        f"AuthorizedKeysFile {work / 'authorized_keys'}\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nPermitRootLogin yes\n"
        f"PidFile {work / 'sshd.pid'}\n"
    )
    Path("/run/sshd").mkdir(exist_ok=True)
    process = subprocess.Popen(
        ["/usr/sbin/sshd", "-D", "-e", "-f", str(work / "sshd_config")],
        stderr=subprocess.DEVNULL,
    )
    time.sleep(0.5)
    return process, port, work / "id_ed25519"


def _tar_ssh_tar(source: Path, target: Path, port: int, key: Path) -> float:
    target.mkdir(parents=True)
    ssh = (
        f"ssh -p {port} -i {key} -o IdentitiesOnly=yes -o StrictHostKeyChecking=no"
        f" -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR root@127.0.0.1"
    )
    command = f"tar -C {source} -cf - . | {ssh} tar -C {target} -xf -"
    env = {k: v for k, v in os.environ.items() if k != "SSH_AUTH_SOCK"}
    started = time.perf_counter()
    subprocess.run(command, shell=True, check=True, env=env)  # noqa: S602
    return time.perf_counter() - started


async def _rounds(work: Path, size_mib: int, rounds: int) -> tuple[float, float]:
    source_data = work / "data"
    await asyncio.to_thread(_make_data, source_data, size_mib)
    agents = [_agent(work, "source"), _agent(work, "target")]
    sshd, ssh_port, key = _sshd(work)
    try:
        for process, grpc_port, _ in agents:
            await _ready(grpc_port, process)
        best_agents = best_ssh = float("inf")
        for round_ in range(rounds):
            volume = f"bench-{round_}"
            shutil.copytree(source_data, work / "source" / "volumes" / volume)
            took = await _agents_move(agents[0][1], agents[1][2], volume)
            await asyncio.to_thread(_same_tree, source_data, work / "target" / "volumes" / volume)
            best_agents = min(best_agents, took)
            copy = work / f"ssh-copy-{round_}"
            took = await asyncio.to_thread(_tar_ssh_tar, source_data, copy, ssh_port, key)
            await asyncio.to_thread(_same_tree, source_data, copy)
            best_ssh = min(best_ssh, took)
            shutil.rmtree(copy)
        return best_agents, best_ssh
    finally:
        sshd.terminate()
        for process, _, _ in agents:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)
        release_mounts_beneath(work)  # the agents' bind mounts of their volumes


def main(size_mib: int, rounds: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="transfer-bench-", dir="/var/tmp") as tmp:
        agents, ssh = run(_rounds(Path(tmp), size_mib, rounds))
    return {
        "bench": "transfer",
        "value": round(agents, 3),
        "reference": round(ssh, 3),
        "ratio": round(agents / ssh, 3),
        "unit": f"s per {size_mib} MiB (agent to agent vs tar | ssh | tar)",
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=2)
    options = parser.parse_args()
    configure_logging("warning")
    for tool in ("ssh", "tar", "zstd"):
        if shutil.which(tool) is None:
            raise SystemExit(f"needs {tool} (scripts/setup-system.sh)")
    print(json.dumps(main(options.size_mib, options.rounds)))
