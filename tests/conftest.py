"""Fixtures every part of the suite shares."""

from __future__ import annotations

import gc
import os
from collections.abc import Iterator

import pytest

TEST_IMAGE = os.environ.get("ENCEDEUS_TEST_IMAGE", "encedeus/busybox:latest")


def pytest_collection_finish(session: pytest.Session) -> None:
    # Everything alive once the suite is collected (modules, the schema, protobufs)
    # lives until the end: keep it out of the per-test collections below.
    gc.collect()
    gc.freeze()


@pytest.fixture(autouse=True)
def _collect_garbage() -> Iterator[None]:
    """Collect each test's garbage at its own teardown, outside any event loop.

    Without this, an object a test leaked in a reference cycle (a socket, a gRPC
    call, a database connection) is finalised at a random later point, inside some
    other test, whose blocking-call guard or warning filter then fails on it.
    """
    yield
    gc.collect()


@pytest.fixture(scope="session", autouse=True)
def _release_data_dir_mounts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Agents mount each server's data directory on itself (nosuid,nodev) and keep the
    mount across their restarts; unmount what this session's agents left behind, so
    that pytest can delete its old temporary directories."""
    yield
    from agent.fleet.data_dir import release_mounts_beneath

    release_mounts_beneath(tmp_path_factory.getbasetemp())
