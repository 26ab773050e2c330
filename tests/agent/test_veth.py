"""Network counters from the host side of a container's veth, on the real dockerd."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import docker
import pytest
from docker.models.containers import Container

from agent.stats.cgroup import NetDevReader
from agent.stats.sampler import StatsSampler
from agent.stats.veth import HostNetDev, namespace_id, veth_peers
from tests.agent.conftest import SESSION, SESSION_LABEL
from tests.conftest import TEST_IMAGE

T = TypeVar("T")


@pytest.fixture
def run_container() -> Iterator[Callable[..., int]]:
    client = docker.from_env()
    started: list[Container] = []

    def run(network_mode: str | None = None) -> int:
        labels = {SESSION_LABEL: SESSION}
        container = client.containers.run(
            TEST_IMAGE, ["sleep", "60"], detach=True, labels=labels, network_mode=network_mode
        )
        started.append(container)
        container.reload()
        return int(container.attrs["State"]["Pid"])

    yield run
    for container in started:
        container.remove(force=True)
    client.close()


def settled(read: Callable[[], T]) -> T:
    """Two equal reads in a row (IPv6 router solicitations may move the counters)."""
    previous = read()
    for _ in range(20):
        time.sleep(0.1)
        current = read()
        if current == previous:
            return current
        previous = current
    raise AssertionError("counters kept moving")


def test_bridge_container_is_read_through_its_host_veth(
    run_container: Callable[..., int],
) -> None:
    pid = run_container()
    nsid = namespace_id(pid)
    assert nsid is not None
    (veth,) = veth_peers()[nsid]
    host, net_dev = HostNetDev(), NetDevReader(pid)
    try:

        def both() -> tuple[tuple[int, int], tuple[int, int]]:
            host_rx, host_tx = host.read()[veth]
            return (host_tx, host_rx), net_dev.read()  # the host receives what it sends

        from_host, from_inside = settled(both)
        assert from_host == from_inside
        assert from_inside[0] > 0  # it has received something (router solicitations, ARP)
    finally:
        host.close()
        net_dev.close()


def test_sampler_counts_the_veth_and_falls_back_to_net_dev(
    run_container: Callable[..., int], tmp_path: Path
) -> None:
    bridged, hosted = run_container(), run_container(network_mode="host")
    assert namespace_id(hosted) is None  # our own namespace: no veth of its own
    sampler = StatsSampler(1 << 30)
    sampler.track("bridged", bridged, 0, tmp_path, 0)
    sampler.track("hosted", hosted, 0, tmp_path, 0)
    readers = {"bridged": NetDevReader(bridged), "hosted": NetDevReader(hosted)}
    try:
        sampler.sample()  # opens the readers
        for name, reader in readers.items():
            # The host's counters move all the time: bracket the sample with reads.
            before = reader.read()
            sample = sampler.sample()[name]
            after = reader.read()
            assert before[0] <= sample.rx_bytes <= after[0], name
            assert before[1] <= sample.tx_bytes <= after[1], name
    finally:
        sampler.close()
        for reader in readers.values():
            reader.close()
