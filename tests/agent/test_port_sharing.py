"""Listeners that would share the ingress ports with Caddy (SO_REUSEPORT): found in
/proc/net/tcp{,6}, and a second Caddy on the same port refused (a real Caddy)."""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from agent.ingress.port_sharing import _overlap, listeners, others_listening
from common.subprocesses import spawn
from tests.agent.test_ingress_caddy import _proxy, _status

TCP = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:0050 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1652 1 0
   1: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000   101        0 77 1 0
   2: 0100007F:A40E 0100007F:88B7 06 00000000:00000000 03:000007E6 00000000     0        0 0 3 0
"""
TCP6 = """\
  sl  local_address                         remote_address                        st
   0: 00000000000000000000000001000000:0050 00000000000000000000000000000000:0000 0A \
00000000:00000000 00:00000000 00000000     0        0 99 1 0
"""


def test_listening_sockets_are_read_from_proc_net_tcp() -> None:
    assert listeners(TCP) == [
        (ipaddress.ip_address("0.0.0.0"), 80, 1652),
        (ipaddress.ip_address("127.0.0.1"), 8080, 77),
    ]  # the TIME_WAIT one is no listener
    assert listeners(TCP6.replace("\\\n", "")) == [(ipaddress.ip_address("::1"), 80, 99)]


@pytest.mark.parametrize(
    ("a", "b", "shared"),
    [
        ("127.0.0.1", "127.0.0.1", True),
        ("0.0.0.0", "127.0.0.1", True),
        ("::", "127.0.0.1", True),  # a dual-stack wildcard takes IPv4 too
        ("127.0.0.1", "127.0.0.2", False),
        ("0.0.0.0", "::1", False),
        ("::1", "127.0.0.1", False),
    ],
)
def test_addresses_overlap_when_one_connection_could_reach_both(
    a: str, b: str, shared: bool
) -> None:
    assert _overlap(ipaddress.ip_address(a), ipaddress.ip_address(b)) is shared
    assert _overlap(ipaddress.ip_address(b), ipaddress.ip_address(a)) is shared


def _listening(host: str, port: int = 0) -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen()
    return sock


_OTHER = """
import socket, sys
sock = socket.socket()
sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
sock.bind((sys.argv[1], int(sys.argv[2])))
sock.listen()
print("ready", flush=True)
sys.stdin.read()
"""


def test_another_process_on_the_port_is_found_one_on_another_address_is_not() -> None:
    # This process stands for Caddy; a child holds the other socket.
    with _listening("127.0.0.1") as ours:
        port = ours.getsockname()[1]
        assert others_listening(os.getpid(), "127.0.0.1", [port]) == []
        for host, found in (("127.0.0.1", [f"127.0.0.1:{port}"]), ("127.0.0.2", [])):
            with subprocess.Popen(
                [sys.executable, "-c", _OTHER, host, str(port)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            ) as other:  # fmt: skip
                assert other.stdout is not None
                assert other.stdout.readline() == "ready\n"
                assert others_listening(os.getpid(), "127.0.0.1", [port]) == found
                # Only the ports this process serves count.
                assert others_listening(os.getpid(), "127.0.0.1", [port + 1]) == []
                other.communicate("")


@pytest.mark.skipif(shutil.which("caddy") is None, reason="caddy not installed")
async def test_a_second_caddy_on_the_same_port_does_not_become_ready(tmp_path: Path) -> None:
    first, port = _proxy(tmp_path / "first")
    second, _ = _proxy(tmp_path / "second")
    # The same ports as the first (as two agents' free_ports() may pick).
    second.settings = dataclasses.replace(
        second.settings,
        http_port=first.settings.http_port,
        https_port=first.settings.https_port,
    )
    running = [asyncio.create_task(first.run())]
    try:
        await asyncio.wait_for(first.ready.wait(), 15)
        running.append(asyncio.create_task(second.run()))
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(second.ready.wait(), 3)
        # The first serves every connection: its 404 page, never a second's.
        for _ in range(10):
            assert await asyncio.to_thread(_status, port, "a.test") == 404
    finally:
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)


async def test_a_caddy_gone_before_the_look_is_no_error(tmp_path: Path) -> None:
    proxy, _ = _proxy(tmp_path)
    done = await spawn("true")
    await done.wait()
    await proxy._check_alone(done.pid)  # its exit is the run loop's to see, not a crash
