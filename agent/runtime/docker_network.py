"""Choosing (and when missing, creating) the bridge network containers join.

Docker 20.10 does not make network names unique: two agents creating the same one at
the same moment can both succeed. Creation is therefore serialised between the agents
of this host by a lock file, and when duplicates exist anyway (agents on several hosts
of one engine, or made before the lock) every agent picks the one with the smallest id.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import docker.errors

from agent.runtime.types import ContainerRuntimeError
from common.logging import get_logger

log = get_logger(__name__)

# Docker's own networks are modes, not something to create.
PREDEFINED_NETWORKS = frozenset({"bridge", "host", "none"})
MANAGED_LABEL = "encedeus.managed"
# No traffic between containers of the network: one account's server cannot reach
# another's unpublished ports. The host still reaches each of them.
ISOLATED_BRIDGE_OPTIONS = {"com.docker.network.bridge.enable_icc": "false"}
LOCK_FILE = Path(tempfile.gettempdir()) / "encedeus-docker-network.lock"


def network_ids(api: docker.APIClient, name: str) -> list[str]:
    """Ids of the networks named exactly `name` (the engine's filter matches parts)."""
    found = api.networks(filters={"name": name})
    return sorted(str(n["Id"]) for n in found if n.get("Name") == name)


def ensure_network(api: docker.APIClient, name: str) -> str:
    """The id of the network `name`, created isolated when missing. Blocking."""
    with _host_lock():
        ids = network_ids(api, name)
        if not ids:
            _create(api, name)
            ids = network_ids(api, name)
    if not ids:
        raise ContainerRuntimeError(f"network {name!r} vanished right after its creation")
    if len(ids) > 1:
        log.warning("network_duplicates", network=name, ids=ids, chosen=ids[0])
    return ids[0]


def _create(api: docker.APIClient, name: str) -> None:
    try:
        created: dict[str, Any] = api.create_network(
            name,
            driver="bridge",
            options=ISOLATED_BRIDGE_OPTIONS,
            labels={MANAGED_LABEL: "true"},
            check_duplicate=True,
        )
    except docker.errors.APIError as exc:
        if exc.status_code != 409:  # 409: an agent of another host created it first
            raise
        return
    log.info("network_created", network=name, id=str(created.get("Id", "")))


@contextlib.contextmanager
def _host_lock() -> Iterator[None]:
    """An exclusive lock shared by every agent of this host; without one (no writable
    temp dir), the smallest-id rule alone decides."""
    try:
        fd = _open_lock_file()
    except OSError as exc:
        log.warning("network_lock_unavailable", path=str(LOCK_FILE), error=str(exc))
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _open_lock_file() -> int:
    # Never O_CREAT on an existing file: with fs.protected_regular, that is refused in a
    # sticky directory for a file another user owns, even to root.
    while True:
        try:
            return os.open(LOCK_FILE, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            pass
        try:
            fd = os.open(LOCK_FILE, os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o444)
        except OSError as exc:
            if exc.errno == errno.EEXIST:
                continue
            raise
        return fd
