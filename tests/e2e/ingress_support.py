"""A cluster with one ingress node (the agent's own Caddy) and curl through it."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil

from tests.e2e.cluster_support import Cluster

SUFFIX = "apps.test"


@dataclass(frozen=True)
class Answer:
    status: int
    body: str


@dataclass(frozen=True)
class Ingress:
    """Where the test's ingress listens and keeps its internal CA."""

    http_port: int
    https_port: int
    data_dir: Path
    dns_port: int

    @property
    def root_ca(self) -> Path:
        return self.data_dir / "ingress" / "tls" / "pki" / "authorities" / "local" / "root.crt"

    def get(self, host: str, path: str = "/", *, https: bool = False) -> Answer:
        """One request through the ingress with the real curl, `host` resolved to
        loopback (never the machine's resolver)."""
        port = self.https_port if https else self.http_port
        scheme = "https" if https else "http"
        command = ["curl", "-sS", "-m", "10", "--resolve", f"{host}:{port}:127.0.0.1"]
        if https:
            command += ["--cacert", str(self.root_ca)]
        command += ["-o", "-", "-w", "\n%{http_code}", f"{scheme}://{host}:{port}{path}"]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        body, _, status = done.stdout.rpartition("\n")
        return Answer(int(status or 0), body if done.returncode == 0 else done.stderr)


@contextlib.contextmanager
def txt_server(port: int, records: dict[str, str], root: Path) -> Iterator[None]:
    """Debian's dnsmasq on 127.0.0.1:`port` answering only the given TXT records."""
    config = root / f"dnsmasq-{port}.conf"
    lines = ["no-resolv", "no-hosts", "bind-interfaces", "listen-address=127.0.0.1"]
    lines += [f"port={port}", "user=root", f"pid-file={root / f'dnsmasq-{port}.pid'}"]
    lines += [f"txt-record={name},{value}" for name, value in records.items()]
    config.write_text("\n".join(lines) + "\n")
    command = [shutil.which("dnsmasq") or "/usr/sbin/dnsmasq", "--keep-in-foreground"]
    process = subprocess.Popen([*command, f"--conf-file={config}"])
    try:
        _wait_port(port)
        yield
    finally:
        process.terminate()
        process.wait(5)


def _wait_port(port: int) -> None:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError(f"dnsmasq did not listen on {port}")


def caddy_of(cluster: Cluster, agent: str) -> psutil.Process:
    """The Caddy child process of the agent named `agent`."""
    process = cluster.agents[agent].process
    assert process is not None
    children = psutil.Process(process.pid).children()
    (caddy,) = [child for child in children if child.name() == "caddy"]
    return caddy
