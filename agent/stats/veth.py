"""Containers' network counters from the host side of their veth pairs.

`/proc/<pid>/net/dev` makes the kernel build the device list of the container's
namespace on each read: 100 such reads were the largest part of a 1 Hz sample of 100
containers. One read of the host's own net/dev has every container's veth in it. The
veths are found once per container, over rtnetlink and without entering its
namespace: the namespace gets an id as seen from ours (RTM_GETNSID with its fd), and
the veths whose peer lives there (IFLA_LINK_NETNSID) are its links. They are used only
when they account for every non-loopback device the container has; otherwise (host
network, macvlan, a moved-in device) the sampler keeps the container's net/dev.
"""

from __future__ import annotations

import os
import socket
import struct
from pathlib import Path

_HEADER = struct.Struct("=IHHII")  # struct nlmsghdr
_ATTR = struct.Struct("=HH")  # struct rtattr / nlattr
_RTM_GETLINK, _RTM_GETNSID = 18, 90
_NLM_F_REQUEST, _NLM_F_DUMP = 0x1, 0x300
_NLMSG_ERROR, _NLMSG_DONE = 2, 3
_IFLA_IFNAME, _IFLA_LINKINFO, _IFLA_LINK_NETNSID = 3, 18, 37
_IFLA_INFO_KIND = 1
_NETNSA_NSID, _NETNSA_FD = 1, 3


def _attributes(data: bytes, offset: int) -> dict[int, bytes]:
    found: dict[int, bytes] = {}
    while offset + _ATTR.size <= len(data):
        length, kind = _ATTR.unpack_from(data, offset)
        if length < _ATTR.size:
            break
        found[kind & 0x3FFF] = data[offset + _ATTR.size : offset + length]
        offset += (length + 3) & ~3
    return found


def _ask(kind: int, flags: int, body: bytes) -> list[bytes]:
    """The payloads of the kernel's answer to one rtnetlink request (blocking)."""
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC) as sock:
        header = _HEADER.pack(_HEADER.size + len(body), kind, _NLM_F_REQUEST | flags, 1, 0)
        sock.sendall(header + body)
        payloads: list[bytes] = []
        while True:
            data, offset = sock.recv(1 << 20), 0
            while offset + _HEADER.size <= len(data):
                length, message, _flags, _seq, _port = _HEADER.unpack_from(data, offset)
                payload = data[offset + _HEADER.size : offset + length]
                if message == _NLMSG_DONE:
                    return payloads
                if message == _NLMSG_ERROR:
                    (error,) = struct.unpack_from("=i", payload)
                    if error:
                        raise OSError(-error, os.strerror(-error))
                    return payloads
                payloads.append(payload)
                offset += (length + 3) & ~3
            if not flags & _NLM_F_DUMP:
                return payloads


def namespace_id(pid: int, proc: Path = Path("/proc")) -> int | None:
    """The id our network namespace gives `pid`'s, None when it has none or is ours."""
    theirs = proc / str(pid) / "ns" / "net"
    if os.stat(theirs).st_ino == os.stat(proc / "self" / "ns" / "net").st_ino:
        return None
    fd = os.open(theirs, os.O_RDONLY | os.O_CLOEXEC)
    try:
        body = b"\0" * 4 + _ATTR.pack(8, _NETNSA_FD) + struct.pack("=I", fd)
        for payload in _ask(_RTM_GETNSID, 0, body):
            raw = _attributes(payload, 4).get(_NETNSA_NSID)
            if raw is not None:
                (nsid,) = struct.unpack("=i", raw)
                return nsid if nsid >= 0 else None
    finally:
        os.close(fd)
    return None


def veth_peers() -> dict[int, list[bytes]]:
    """Namespace id -> names of our veths whose peer lives in that namespace (blocking:
    one rtnetlink dump of every link)."""
    found: dict[int, list[bytes]] = {}
    for payload in _ask(_RTM_GETLINK, _NLM_F_DUMP, b"\0" * 16):
        attrs = _attributes(payload, 16)  # after struct ifinfomsg
        link_nsid = attrs.get(_IFLA_LINK_NETNSID)
        name = attrs.get(_IFLA_IFNAME)
        if link_nsid is None or name is None:
            continue
        kind = _attributes(attrs.get(_IFLA_LINKINFO, b""), 0).get(_IFLA_INFO_KIND, b"")
        if kind.rstrip(b"\0") == b"veth":
            (nsid,) = struct.unpack("=i", link_nsid)
            found.setdefault(nsid, []).append(name.rstrip(b"\0"))
    return found


class HostNetDev:
    """Our namespace's net/dev, read whole: name -> (rx_bytes, tx_bytes) of every
    device; close() when done."""

    def __init__(self, proc: Path = Path("/proc")) -> None:
        self._fd = os.open(proc / "self" / "net" / "dev", os.O_RDONLY | os.O_CLOEXEC)

    def read(self) -> dict[bytes, tuple[int, int]]:
        # A read of a seq_file returns about a page at most: read on to the end (from
        # where the last read stopped, not pread at offsets that re-walk the list).
        os.lseek(self._fd, 0, os.SEEK_SET)
        chunks = []
        while chunk := os.read(self._fd, 65536):
            chunks.append(chunk)
        text = b"".join(chunks)
        counters = {}
        # Two header lines, then "iface: rx_bytes packets ... (8 rx fields) tx_bytes ...".
        for line in text.split(b"\n")[2:]:
            name, _, rest = line.partition(b":")
            if rest:
                fields = rest.split(None, 9)
                counters[name.strip()] = (int(fields[0]), int(fields[8]))
        return counters

    def close(self) -> None:
        os.close(self._fd)
