"""Choosing local TCP ports for a configuration written before anything listens on them.

A port the kernel hands out for `bind(port 0)` is free again as soon as the probe closes,
so two probes made one after the other can get the same port. `pick_ports` keeps every
probe bound until all ports are chosen: the ports it returns are distinct. Another
process may still take one before it is used; callers that cannot retry should say so.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Sequence


def _probe(stack: contextlib.ExitStack, host: str, port: int) -> int | None:
    """Bind a probe on `host`:`port` (0: any) and keep it in `stack`; its port, or None."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    probe = stack.enter_context(socket.socket(family, socket.SOCK_STREAM))
    if port:
        # A named port is free even with connections of a past listener in TIME_WAIT.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        probe.bind((host, port))
    except OSError:
        return None
    bound: int = probe.getsockname()[1]
    return bound


def pick_ports(preferred: Sequence[int], host: str = "127.0.0.1") -> list[int]:
    """One distinct TCP port on `host` per entry of `preferred`, in order: the entry itself
    when it can be bound now, otherwise (and for 0) one the kernel picks."""
    with contextlib.ExitStack() as stack:
        chosen: list[int | None] = []
        for port in preferred:
            taken = port in chosen
            chosen.append(None if not port or taken else _probe(stack, host, port))
        # Kernel-picked ports come last, so none of them can be a preferred port that
        # is still free but not yet probed.
        ports = [port if port is not None else _probe(stack, host, 0) for port in chosen]
    if None in ports:
        raise OSError(f"no free TCP port on {host}")
    return [port for port in ports if port is not None]


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """`count` distinct TCP ports on `host` that the kernel says are free now."""
    return pick_ports([0] * count, host)


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """Can `port` be bound on `host` right now?"""
    with contextlib.ExitStack() as stack:
        return _probe(stack, host, port) is not None
