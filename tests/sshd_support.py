"""A real OpenSSH server on loopback for tests: its own host key, one authorized
client key, SFTP served by `internal-sftp`. The client side is the `ssh` command
line (:attr:`OpenSshServer.ssh_command`) that tools like restic's `sftp:` backend run.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

from common.ports import free_ports

SSHD = "/usr/sbin/sshd"


@dataclass(frozen=True, slots=True)
class OpenSshServer:
    port: int
    client_key: Path
    known_hosts: Path
    user: str

    @property
    def ssh_command(self) -> str:
        """`ssh` to this server as `user`, trusting only its host key, for SFTP."""
        return (
            f"ssh -p {self.port} -i {self.client_key} -o BatchMode=yes"
            f" -o StrictHostKeyChecking=yes -o UserKnownHostsFile={self.known_hosts}"
            f" -o IdentitiesOnly=yes {self.user}@127.0.0.1 -s sftp"
        )


def _keygen(path: Path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path.with_suffix(".pub").read_text().strip()


def _wait_listening(port: int, process: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"sshd exited with {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError("sshd did not listen in time")


@contextlib.contextmanager
def openssh_server(directory: Path) -> Iterator[OpenSshServer]:
    """Start sshd on 127.0.0.1 (blocking; call from a thread in async tests)."""
    directory.mkdir(parents=True, exist_ok=True)
    host_key, client_key = directory / "host_ed25519", directory / "client_ed25519"
    host_public = _keygen(host_key)
    authorized = directory / "authorized_keys"
    authorized.write_text(_keygen(client_key) + "\n")
    (port,) = free_ports(1)
    known_hosts = directory / "known_hosts"
    known_hosts.write_text(f"[127.0.0.1]:{port} {host_public}\n")
    config = directory / "sshd_config"
    config.write_text(
        "\n".join(
            [
                f"Port {port}",
                "ListenAddress 127.0.0.1",
                f"HostKey {host_key}",
                f"AuthorizedKeysFile {authorized}",
                f"PidFile {directory / 'sshd.pid'}",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "PermitRootLogin prohibit-password",
                "StrictModes no",
                "UsePAM no",
                "Subsystem sftp internal-sftp",
                "",
            ]
        )
    )
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation
    with (directory / "sshd.log").open("wb") as log:
        process = subprocess.Popen(
            [SSHD, "-D", "-e", "-f", str(config)], stdout=subprocess.DEVNULL, stderr=log
        )
    try:
        _wait_listening(port, process)
        yield OpenSshServer(port, client_key, known_hosts, "root")
    finally:
        process.terminate()
        process.wait(timeout=10)


@contextlib.asynccontextmanager
async def running_openssh(directory: Path) -> AsyncIterator[OpenSshServer]:
    """:func:`openssh_server` for async tests: started and stopped in a thread."""
    server = openssh_server(directory)
    started = await asyncio.to_thread(server.__enter__)
    try:
        yield started
    finally:
        await asyncio.to_thread(server.__exit__, None, None, None)
