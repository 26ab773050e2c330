"""Choosing local ports: distinct within one choice, preferred ports when free."""

from __future__ import annotations

import contextlib
import socket

from common.ports import free_ports, pick_ports, port_is_free
from controlplane.single_host.state import DEFAULT_AGENT_PORTS, choose_agent_ports


def test_ports_chosen_together_are_distinct() -> None:
    # One probe after another, 200 kernel-picked ports repeat one most of the time.
    ports = free_ports(200)
    assert len(set(ports)) == 200
    assert all(port_is_free(port) for port in ports)


def test_a_preferred_port_is_used_only_while_it_is_free() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        assert not port_is_free(taken)
        [free] = free_ports(1)
        chosen = pick_ports([free, taken, free, 0])
    assert chosen[0] == free
    assert len(set(chosen)) == 4
    assert taken not in chosen


def test_agent_ports_never_share_a_port_with_a_default() -> None:
    # Kernel-picked ports come from the ephemeral range, which holds 50051.
    with socket.socket() as busy:
        busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        with contextlib.suppress(OSError):  # taken by someone else: just as good
            busy.bind(("127.0.0.1", DEFAULT_AGENT_PORTS["http"]))
            busy.listen()
        ports = choose_agent_ports({}, prefer_defaults=True)
    assert ports["http"] != DEFAULT_AGENT_PORTS["http"]
    assert len(set(ports.values())) == len(ports)  # every listener its own port
