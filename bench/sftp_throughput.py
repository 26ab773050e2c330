"""SFTP throughput: Skyhook's SFTP server against OpenSSH's sshd with internal-sftp.

Built to give the same ratio run after run on a shared, noisy machine:

- One OpenSSH `sftp` binary (resolved once), default options, key login, and the same
  cipher on both sides (`aes128-gcm@openssh.com`, the one Skyhook prefers and
  OpenSSH's fastest with AES-NI): only the server differs.
- Gets read one file, the same inode for both servers (a hard link of the payload
  into the server directory; sshd is given its absolute path), so both read from
  the same page cache. Puts write a fresh file (the previous one is removed, and
  dirty pages are synced, outside the timing) from the same payload.
- Rounds are interleaved: each round runs every phase once on both servers, the
  order alternating from round to round, and a ratio is taken per round (OpenSSH's
  seconds / Skyhook's), so load that drifts over minutes hits both sides of a ratio
  alike. min / median / max of the per-round ratios are reported.
- Phases: one client putting, one getting, then `--clients` clients at once on one
  server putting (distinct files), then getting (the same file); the parallel
  figure is the aggregate (bytes of every client / wall time of the phase).
- Besides wall time, the server's CPU time per MiB: this process's own (Skyhook
  runs in it) and, for sshd, the CPU its reaped per-connection processes used
  (cutime + cstime of the listener). The load average is printed with every round,
  and each phase's ratio with both sides' seconds (Skyhook/OpenSSH), so a round's
  low ratio shows whether our transfer was slow or sshd's fast.

Every transfer is checked byte for byte, outside the timing. The last line is the
JSON result (ratio = median of the per-round ratios; goal put/get >= 1.3, worst >=
1.1, parallel >= 0.8).

    .venv/bin/python bench/sftp_throughput.py [--size-mib 256] [--rounds 5] [--clients 4]
"""

from __future__ import annotations

import argparse
import asyncio
import filecmp
import json
import os
import resource
import shutil
import socket
import statistics
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import asyncssh
import psutil
from aiohttp import web

from agent.controlplane_client import HttpControlPlane
from agent.event_loop import run
from agent.sftp import SFTPService
from common.logging import configure_logging
from common.ports import free_ports
from common.subprocesses import spawn

SECRET = "bench-node-secret"  # noqa: S105  (a throwaway in-process control plane)
CIPHER = "aes128-gcm@openssh.com"
SFTP = shutil.which("sftp") or "sftp"
TICK = os.sysconf("SC_CLK_TCK")
PHASES = ("put", "get", "parallel_put", "parallel_get")


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
async def _openssh_server(work: Path, public_key: str) -> AsyncIterator[tuple[int, int]]:
    """A private sshd with internal-sftp; yields (port, pid)."""
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
        f"PidFile {work / 'sshd.pid'}\nSubsystem sftp internal-sftp\nMaxStartups 64\n"
    )
    Path("/run/sshd").mkdir(exist_ok=True)  # privilege separation directory
    proc = await spawn(
        "/usr/sbin/sshd", "-D", "-e", "-f", str(config), stderr=asyncio.subprocess.DEVNULL
    )
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                await asyncio.sleep(0.05)
        yield port, proc.pid
    finally:
        proc.terminate()
        await proc.wait()


@dataclass(frozen=True)
class Server:
    """One side of the comparison, as the client and the bench see it."""

    name: str
    port: int
    user: str
    source: str  # the path of the shared source file, as this server names it
    upload_dir: str  # where puts go, as this server names it
    stored_dir: Path  # the same directory on this machine
    cpu_seconds: Callable[[], float]  # the server's CPU seconds so far


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _reaped_children_cpu(pid: int) -> float:
    """CPU seconds of `pid`'s reaped children (sshd's per-connection processes)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[13]) + int(fields[14])) / TICK  # cutime, cstime


async def _settle_sshd(pid: int) -> None:
    """Wait until sshd reaped every connection's processes, so their CPU is counted."""
    parent = psutil.Process(pid)
    for _ in range(200):
        if not parent.children():
            return
        await asyncio.sleep(0.01)


async def _sftp(server: Server, key: Path, commands: list[str], cwd: Path) -> None:
    args = [
        SFTP, "-q", "-c", CIPHER, "-P", str(server.port), "-i", str(key),
        "-o", "IdentitiesOnly=yes", "-o", "StrictHostKeyChecking=no",
        "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
        "-b", "-", f"{server.user}@127.0.0.1",
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "SSH_AUTH_SOCK"}
    proc = await spawn(
        *args, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE, cwd=cwd, env=env,
    )  # fmt: skip
    _, err = await proc.communicate("\n".join(commands).encode() + b"\n")
    if proc.returncode != 0:
        raise RuntimeError(f"sftp {commands!r} on {server.name} failed: {err.decode()}")


@dataclass
class Results:
    seconds: dict[tuple[str, str], list[float]] = field(default_factory=dict)
    cpu: dict[tuple[str, str], list[float]] = field(default_factory=dict)


class Bench:
    def __init__(self, work: Path, key: Path, size: int, clients: int) -> None:
        self.work, self.key, self.size, self.clients = work, key, size, clients
        self.local = work / "local"
        self.results = Results()

    def _commands(self, server: Server, phase: str, client: int) -> list[str]:
        if phase.endswith("put"):
            return [f"put payload.bin {server.upload_dir}/up-{client}.bin"]
        return [f"get {server.source} back-{server.name}-{client}.bin"]

    async def _prepare(self, server: Server, phase: str, clients: int) -> None:
        for client in range(clients):
            (server.stored_dir / f"up-{client}.bin").unlink(missing_ok=True)
        await asyncio.to_thread(os.sync)  # no writeback of the last phase under this one

    async def _verify(self, server: Server, phase: str, clients: int) -> None:
        payload = self.local / "payload.bin"
        for client in range(clients):
            if phase.endswith("put"):
                got = server.stored_dir / f"up-{client}.bin"
            else:
                got = self.local / f"back-{server.name}-{client}.bin"
            same = await asyncio.to_thread(filecmp.cmp, payload, got, shallow=False)
            if not same:
                raise RuntimeError(f"{server.name} {phase}: {got.name} differs from the payload")
            if not phase.endswith("put"):
                got.unlink()

    async def run_phase(self, server: Server, phase: str, sshd_pid: int) -> float:
        clients = self.clients if phase.startswith("parallel") else 1
        await self._prepare(server, phase, clients)
        cpu_before = server.cpu_seconds()
        began = time.perf_counter()
        await asyncio.gather(
            *(
                _sftp(server, self.key, self._commands(server, phase, c), self.local)
                for c in range(clients)
            )
        )
        took = time.perf_counter() - began
        if server.name == "openssh":
            await _settle_sshd(sshd_pid)
        cpu = server.cpu_seconds() - cpu_before
        self.results.seconds.setdefault((server.name, phase), []).append(took)
        self.results.cpu.setdefault((server.name, phase), []).append(cpu)
        await self._verify(server, phase, clients)
        return took

    async def rounds(self, servers: list[Server], rounds: int, sshd_pid: int) -> None:
        for number in range(rounds):
            order = servers if number % 2 == 0 else servers[::-1]
            line = [f"round {number + 1}/{rounds} load {os.getloadavg()[0]:.1f}:"]
            for phase in PHASES:
                took = {s.name: await self.run_phase(s, phase, sshd_pid) for s in order}
                ratio = took["openssh"] / took["skyhook"]
                line.append(f"{phase} {ratio:.2f} ({took['skyhook']:.2f}/{took['openssh']:.2f}s)")
            print(" ".join(line), flush=True)


def _summary(results: Results, size: int, clients: int) -> dict[str, object]:
    mib = size / 2**20
    value, reference, ratio, spread, cpu = {}, {}, {}, {}, {}
    for phase in PHASES:
        moved = size * (clients if phase.startswith("parallel") else 1) / 1e6
        ours = results.seconds[("skyhook", phase)]
        theirs = results.seconds[("openssh", phase)]
        ratios = [t / o for o, t in zip(ours, theirs, strict=True)]
        value[phase] = round(moved / statistics.median(ours), 1)
        reference[phase] = round(moved / statistics.median(theirs), 1)
        ratio[phase] = round(statistics.median(ratios), 3)
        spread[phase] = [round(min(ratios), 3), ratio[phase], round(max(ratios), 3)]
        per_mib = mib * (clients if phase.startswith("parallel") else 1)
        cpu[phase] = {
            name: round(statistics.median(results.cpu[(name, phase)]) * 1000 / per_mib, 2)
            for name in ("skyhook", "openssh")
        }
    return {
        "bench": "sftp_throughput",
        "value": value,
        "reference": reference,
        "ratio": ratio,
        "ratio_min_median_max": spread,
        "server_cpu_ms_per_mib": cpu,
        "load_average": round(os.getloadavg()[0], 1),
        "unit": "MB/s (median per phase; ratio = median of per-round ratios)",
    }


async def main(size_mib: int, rounds: int, clients: int) -> dict[str, object]:
    size = size_mib * 1024 * 1024
    with tempfile.TemporaryDirectory(prefix="sftp-bench-") as tmp:
        work = Path(tmp)
        user_key = asyncssh.generate_private_key("ssh-ed25519")
        key_path = work / "id_ed25519"
        key_path.write_bytes(user_key.export_private_key())
        key_path.chmod(0o600)
        public_key = user_key.export_public_key().decode().strip()
        (work / "local").mkdir()
        await asyncio.to_thread(_make_file, work / "local" / "payload.bin", size)
        server_id = str(uuid.uuid4())
        volume = work / "agent" / "volumes" / server_id
        volume.mkdir(parents=True)
        os.link(work / "local" / "payload.bin", volume / "source.bin")  # one inode for gets
        (work / "openssh").mkdir()
        bench = Bench(work, key_path, size, clients)
        async with _control_plane(server_id, public_key) as url:
            control_plane = HttpControlPlane(url, SECRET)
            service = SFTPService(
                control_plane, data_dir=work / "agent", host="127.0.0.1", port=0, file_owner=None
            )
            await service.start()
            try:
                async with _openssh_server(work, public_key) as (sshd_port, sshd_pid):
                    servers = [
                        Server(
                            "skyhook", service.port, f"bench.{server_id[:8]}",
                            "/source.bin", "/", volume, _own_cpu,
                        ),
                        Server(
                            "openssh", sshd_port, "root", str(volume / "source.bin"),
                            str(work / "openssh"), work / "openssh",
                            lambda: _reaped_children_cpu(sshd_pid),
                        ),
                    ]  # fmt: skip
                    await bench.rounds(servers, rounds, sshd_pid)
            finally:
                await service.stop()
                await control_plane.close()
    return _summary(bench.results, size, clients)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--clients", type=int, default=4)
    options = parser.parse_args()
    configure_logging("warning")  # session logs would drown the result line
    if shutil.which("sftp") is None or not Path("/usr/sbin/sshd").exists():
        raise SystemExit("needs the OpenSSH client and server (scripts/setup-system.sh)")
    print(json.dumps(run(main(options.size_mib, options.rounds, options.clients))))
