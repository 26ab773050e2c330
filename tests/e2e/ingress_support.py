"""A cluster with one ingress node (the agent's own Caddy) and curl through it."""

from __future__ import annotations

import subprocess
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


def caddy_of(cluster: Cluster, agent: str) -> psutil.Process:
    """The Caddy child process of the agent named `agent`."""
    process = cluster.agents[agent].process
    assert process is not None
    children = psutil.Process(process.pid).children()
    (caddy,) = [child for child in children if child.name() == "caddy"]
    return caddy
