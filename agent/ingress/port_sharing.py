"""Who else listens on the ingress ports.

Caddy sets SO_REUSEPORT on its listeners (to keep them across config reloads), so a
second process that does the same as the same user, such as the host's own
`caddy.service` that Debian's package starts on port 80, binds the same port without
an error, and the kernel then hands each new connection to one of them at random.
The agent looks for such listeners each time its Caddy comes up and refuses to serve
beside them (one that binds later is not looked for). Blocking (reads /proc): call it
from a worker thread.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
from collections.abc import Iterable
from pathlib import Path

LISTEN = "0A"  # TCP_LISTEN in /proc/net/tcp's st column
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def _address(hex_address: str) -> Address:
    """/proc/net/tcp{,6}'s host-order hex words to an address."""
    raw = bytes.fromhex(hex_address)
    # Each 32-bit word is in the kernel's byte order (little-endian here).
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    return ipaddress.IPv4Address(words) if len(words) == 4 else ipaddress.IPv6Address(words)


def listeners(table: str) -> list[tuple[Address, int, int]]:
    """(address, port, socket inode) of each listening socket in a /proc/net/tcp{,6}
    text."""
    found = []
    for line in table.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 10 or fields[3] != LISTEN:
            continue
        address, _, port = fields[1].partition(":")
        found.append((_address(address), int(port, 16), int(fields[9])))
    return found


def _overlap(a: Address, b: Address) -> bool:
    """Connections to `a` and `b` can reach the same socket (a wildcard takes all of
    its family, and an IPv6 wildcard also IPv4's on a dual-stack socket)."""
    if a == b:
        return True
    if a.is_unspecified and (a.version == b.version or a.version == 6):
        return True
    return b.is_unspecified and (a.version == b.version or b.version == 6)


def socket_inodes(pid: int) -> set[int]:
    """The socket inodes process `pid` holds."""
    inodes = set()
    fd_dir = Path(f"/proc/{pid}/fd")
    for entry in os.listdir(fd_dir):
        try:
            target = os.readlink(fd_dir / entry)
        except OSError:
            continue  # closed meanwhile
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return inodes


def others_listening(pid: int, host: str, ports: Iterable[int]) -> list[str]:
    """The `address:port`s of other processes' listeners that share connections to
    `host` with a listener of process `pid` on one of `ports` (in `pid`'s network
    namespace). The listeners are read before `pid`'s sockets: one it opens meanwhile
    is in neither, one it closes meanwhile looks like another's (look twice)."""
    ours: Address = ipaddress.IPv6Address("::")  # every address, or a name: any
    with contextlib.suppress(ValueError):
        ours = ipaddress.ip_address(host)
    wanted = set(ports)
    found: list[tuple[Address, int, int]] = []
    for name in ("tcp", "tcp6"):
        try:
            table = Path(f"/proc/{pid}/net/{name}").read_text()
        except FileNotFoundError:
            continue  # no IPv6 in this kernel
        found += [entry for entry in listeners(table) if entry[1] in wanted]
    own = socket_inodes(pid)
    serving = {port for _, port, inode in found if inode in own}
    return sorted(
        f"{address}:{port}"
        for address, port, inode in found
        if port in serving and inode not in own and _overlap(address, ours)
    )
