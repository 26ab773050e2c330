"""SFTP throughput: Skyhook's SFTP server against OpenSSH's sshd with internal-sftp.

The same OpenSSH `sftp` client (default options, key login) puts and gets the same
512 MiB file against both servers in the same run: Skyhook's SFTPService in this
process (with a minimal control plane answering /v1/remote/sftp/auth), and a private
sshd (own config and host key in a temp dir, `Subsystem sftp internal-sftp`) on another
loopback port. Each transfer runs `--rounds` times per server, alternating, and the
best time counts. The last line is the JSON result; ratio = Skyhook / OpenSSH
throughput for put and get (goal: both >= 1.0).

    .venv/bin/python bench/sftp_throughput.py [--size-mib 512] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import filecmp
import json
import os
import shutil
import socket
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncssh
from aiohttp import web

from agent.controlplane_client import HttpControlPlane
from agent.sftp import SFTPService
from common.logging import configure_logging
from common.ports import free_ports

SECRET = "bench-node-secret"  # noqa: S105  (a throwaway in-process control plane)


def _make_file(path: Path, size: int) -> None:
    block = os.urandom(8 * 1024 * 1024)
    with path.open("wb") as out:
        written = 0
        while written < size:
            chunk = block[: min(len(block), size - written)]
            out.write(chunk)
            written += len(chunk)


@asynccontextmanager
async def _control_plane(server_id: str, public_key: str) -> AsyncIterator[str]:
    async def auth(request: web.Request) -> web.Response:
        body = await request.json()
        ok = request.headers.get("Authorization") == f"Bearer {SECRET}" and " ".join(
            str(body.get("public_key", "")).split()[:2]
        ) == " ".join(public_key.split()[:2])
        if not ok:
            error = {"error": {"code": "invalid_credentials", "message": "no", "details": None}}
            return web.json_response(error, status=403)
        grant = {
            "server_id": server_id,
            "user_id": "bench",
            "permissions": ["file.read", "file.write"],
        }
        return web.json_response(grant)

    app = web.Application()
    app.router.add_post("/v1/remote/sftp/auth", auth)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


@asynccontextmanager
async def _openssh_server(work: Path, public_key: str) -> AsyncIterator[int]:
    [port] = free_ports(1)
    host_key = asyncssh.generate_private_key("ssh-ed25519")
    (work / "host_key").write_bytes(host_key.export_private_key())
    (work / "host_key").chmod(0o600)
    (work / "authorized_keys").write_text(public_key + "\n")
    config = work / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {work / 'host_key'}\n"
        f"AuthorizedKeysFile {work / 'authorized_keys'}\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nPermitRootLogin yes\n"
        f"PidFile {work / 'sshd.pid'}\nSubsystem sftp internal-sftp\n"
    )
    Path("/run/sshd").mkdir(exist_ok=True)  # privilege separation directory
    proc = await asyncio.create_subprocess_exec(
        "/usr/sbin/sshd", "-D", "-e", "-f", str(config), stderr=asyncio.subprocess.DEVNULL
    )
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                await asyncio.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        await proc.wait()


async def _transfer(port: int, user: str, key: Path, command: str, cwd: Path) -> float:
    args = [
        "sftp", "-q", "-P", str(port), "-i", str(key), "-o", "IdentitiesOnly=yes",
        "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
        "-o", "LogLevel=ERROR", "-b", "-", f"{user}@127.0.0.1",
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "SSH_AUTH_SOCK"}
    started = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        *args, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE, cwd=cwd, env=env,
    )  # fmt: skip
    _, err = await proc.communicate(command.encode() + b"\n")
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"sftp {command!r} on port {port} failed: {err.decode()}")
    return elapsed


Target = tuple[int, str, str, Path]  # port, user, remote path, where the server stores it


async def _verify(local: Path, other: Path, what: str) -> None:
    # Speed counts only for the right bytes: every transfer is compared, outside the timing.
    same = await asyncio.to_thread(filecmp.cmp, local, other, shallow=False)
    if not same:
        raise RuntimeError(f"{what}: the file differs from the local payload")


async def _best_times(
    targets: dict[str, Target], key: Path, local: Path, rounds: int
) -> dict[tuple[str, str], float]:
    """Best seconds per (server, op), servers alternating within each round."""
    best: dict[tuple[str, str], float] = {}
    for _ in range(rounds):
        for op in ("put", "get"):
            for name, (port, user, remote, stored) in targets.items():
                back = f"back-{name}.bin"
                command = f"put payload.bin {remote}" if op == "put" else f"get {remote} {back}"
                took = await _transfer(port, user, key, command, local)
                best[(name, op)] = min(best.get((name, op), took), took)
                if op == "put":
                    await _verify(local / "payload.bin", stored, f"{name}: the stored upload")
                else:
                    await _verify(local / "payload.bin", local / back, f"{name}: the download")
                    (local / back).unlink()
    return best


async def _measure(work: Path, size: int, rounds: int) -> dict[tuple[str, str], float]:
    user_key = asyncssh.generate_private_key("ssh-ed25519")
    key_path = work / "id_ed25519"
    key_path.write_bytes(user_key.export_private_key())
    key_path.chmod(0o600)
    public_key = user_key.export_public_key().decode().strip()
    local = work / "local"
    local.mkdir()
    await asyncio.to_thread(_make_file, local / "payload.bin", size)
    server_id = str(uuid.uuid4())
    (work / "openssh").mkdir()
    async with _control_plane(server_id, public_key) as url:
        control_plane = HttpControlPlane(url, SECRET)
        service = SFTPService(
            control_plane, data_dir=work / "agent", host="127.0.0.1", port=0, file_owner=None
        )
        await service.start()
        try:
            async with _openssh_server(work, public_key) as sshd_port:
                stored = work / "openssh" / "payload.bin"
                targets = {
                    "skyhook": (
                        service.port,
                        f"bench.{server_id[:8]}",
                        "/payload.bin",
                        work / "agent" / "volumes" / server_id / "payload.bin",
                    ),
                    "openssh": (sshd_port, "root", str(stored), stored),
                }
                return await _best_times(targets, key_path, local, rounds)
        finally:
            await service.stop()
            await control_plane.close()


async def main(size_mib: int, rounds: int) -> dict[str, object]:
    size = size_mib * 1024 * 1024
    with tempfile.TemporaryDirectory(prefix="sftp-bench-") as tmp:
        best = await _measure(Path(tmp), size, rounds)
    mb = size / 1e6
    ops = ("put", "get")
    return {
        "bench": "sftp_throughput",
        "value": {op: round(mb / best[("skyhook", op)], 1) for op in ops},
        "reference": {op: round(mb / best[("openssh", op)], 1) for op in ops},
        "ratio": {op: round(best[("openssh", op)] / best[("skyhook", op)], 3) for op in ops},
        "unit": "MB/s",
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=2)
    options = parser.parse_args()
    configure_logging("warning")  # session logs would drown the result line
    if shutil.which("sftp") is None or not Path("/usr/sbin/sshd").exists():
        raise SystemExit("needs the OpenSSH client and server (scripts/setup-system.sh)")
    print(json.dumps(asyncio.run(main(options.size_mib, options.rounds))))
