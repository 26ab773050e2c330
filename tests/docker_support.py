"""The local dockerd as tests see it: containers found and removed by their labels."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import docker


@contextlib.contextmanager
def docker_engine() -> Iterator[docker.DockerClient]:
    """A client of the local dockerd, closed after the block."""
    client = docker.from_env()
    try:
        yield client
    finally:
        client.close()


def labelled(
    client: docker.DockerClient, labels: dict[str, str], *, running_only: bool = False
) -> list[Any]:
    """The containers carrying all of `labels` (one removed while listed is skipped)."""
    filters: dict[str, Any] = {"label": [f"{k}={v}" for k, v in labels.items()]}
    return list(client.containers.list(all=not running_only, filters=filters, ignore_removed=True))


def labelled_containers(labels: dict[str, str], *, running_only: bool = False) -> list[Any]:
    """The containers carrying all of `labels`, for their attributes (the client is
    closed: act on them inside `docker_engine()` instead)."""
    with docker_engine() as client:
        return labelled(client, labels, running_only=running_only)


def remove_labelled_containers(labels: dict[str, str]) -> None:
    """Remove every container carrying all of `labels`."""
    with docker_engine() as client:
        for container in labelled(client, labels):
            with contextlib.suppress(docker.errors.NotFound):
                container.remove(force=True)
