"""Listen addresses for agents that tests and their configs start on loopback."""

from __future__ import annotations

from common.ports import free_ports

LISTENERS = ("grpc", "http", "sftp")


def agent_listeners() -> dict[str, dict[str, object]]:
    """The agent's `grpc`, `http` and `sftp` blocks on 127.0.0.1, each on its own free port."""
    ports = free_ports(len(LISTENERS))
    return {
        name: {"host": "127.0.0.1", "port": port}
        for name, port in zip(LISTENERS, ports, strict=True)
    }
