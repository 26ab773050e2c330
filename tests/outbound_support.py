"""Targets for tests of the guarded outbound client: a loopback listener that counts
every TCP connection it gets, the many spellings of its address, and a resolver that
maps test names to addresses (checked by the guard like the system resolver's)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass

from aiohttp.abc import AbstractResolver, ResolveResult

# Ways to write "this host's loopback" that a text check may miss; `{port}` is the
# listener's. Every one must be refused before a connection is made.
LOOPBACK_HOSTS = (
    "127.0.0.1",
    "１２７．０．０．１",  # full-width digits and dots (NFKC)  # noqa: RUF001
    "127。0。0。1",  # ideographic full stops
    "①②⑦.0.0.1",  # circled digits
    "127.0.0.1.",  # trailing dot
    "127.1",
    "2130706433",  # decimal
    "0x7f000001",  # hex
    "0x7f.1",
    "0177.0.0.1",  # octal
    "017700000001",
    "127.000.000.001",
    "0",  # 0.0.0.0 reaches the local host
    "0.0.0.0",
    "[::]",
    "[::1]",
    "[::ffff:127.0.0.1]",  # IPv4-mapped IPv6
    "[::ffff:7f00:1]",
    "[0:0:0:0:0:ffff:127.0.0.1]",
    "[2002:7f00:1::]",  # 6to4 of 127.0.0.1
    "localhost",
    "ｌｏｃａｌｈｏｓｔ",  # full-width letters  # noqa: RUF001
)


@dataclass
class CountingListener:
    """A TCP listener on 127.0.0.1 and ::1 (same port) that answers any request with
    200 and a secret body, counting connections."""

    port: int = 0
    connections: int = 0

    def url(self, host: str, path: str = "/") -> str:
        return f"http://{host}:{self.port}{path}"


@contextlib.asynccontextmanager
async def counting_listener() -> AsyncIterator[CountingListener]:
    """Serve a :class:`CountingListener` until exit."""
    state = CountingListener()

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        state.connections += 1
        with contextlib.suppress(OSError):
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 14\r\nConnection: close\r\n\r\n")
            writer.write(b"loopback only\n")
            await writer.drain()
        writer.close()

    v4 = await asyncio.start_server(answer, "127.0.0.1", 0)
    state.port = v4.sockets[0].getsockname()[1]
    v6 = await asyncio.start_server(answer, "::1", state.port)
    try:
        yield state
    finally:
        for server in (v4, v6):
            server.close()
            await server.wait_closed()


class StaticResolver(AbstractResolver):
    """Resolves the names of `names` to their addresses; any other name fails as the
    system resolver fails (socket.gaierror EAI_NONAME)."""

    def __init__(self, names: Mapping[str, Sequence[str]]) -> None:
        self._names = dict(names)

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_UNSPEC
    ) -> list[ResolveResult]:
        if host not in self._names:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [
            ResolveResult(
                hostname=host,
                host=address,
                port=port,
                family=socket.AF_INET6 if ":" in address else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for address in self._names[host]
        ]

    async def close(self) -> None:
        return None
