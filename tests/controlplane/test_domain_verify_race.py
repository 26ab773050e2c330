"""Two accounts verifying the same custom domain at the same moment: exactly one wins,
the other is 409 domain_taken (the partial unique index on verified domains), on
SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import dns.message
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from tests.controlplane.accounts_support import Account, error_code, expect_json, register
from tests.controlplane.conftest import ConfigFactory, start_client

DOMAIN = "shop.example"


class BarrierTxtServer(asyncio.DatagramProtocol):
    """A DNS server on loopback that answers no TXT query until `wanted` queries are
    waiting, then answers them all with every token: each verification has passed its
    own "verified elsewhere?" check before any of them learns it succeeded."""

    def __init__(self, wanted: int) -> None:
        self.wanted = wanted
        self.tokens: list[str] = []
        self.waiting: list[tuple[dns.message.Message, Any]] = []
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.waiting.append((dns.message.from_wire(data), addr))
        if len({a for _, a in self.waiting}) >= self.wanted:
            self.wanted = 0  # released: later queries (retries) are answered at once
            for query, to in self.waiting:
                self._answer(query, to)
            self.waiting.clear()

    def _answer(self, query: dns.message.Message, addr: Any) -> None:
        response = dns.message.make_response(query)
        quoted = [f'"{token}"' for token in self.tokens]
        response.answer.append(
            dns.rrset.from_text(
                query.question[0].name, 60, dns.rdataclass.IN, dns.rdatatype.TXT, *quoted
            )
        )
        assert self.transport is not None
        self.transport.sendto(response.to_wire(), addr)


async def _claim(client: Any, user: Account, app: str) -> tuple[str, str]:
    body = {"app_name": app, "image": "encedeus/busybox:latest", "replicas": 0, "ports": [80]}
    created = await expect_json(
        await client.post("/v1/deployments", json=body, headers=user.headers), 201
    )
    domains = f"/v1/deployments/{created['id']}/domains"
    claim = await expect_json(
        await client.post(domains, json={"domain": DOMAIN}, headers=user.headers), 201
    )
    return f"{domains}/{DOMAIN}/verify", claim["verification"]["token"]


async def test_two_racing_verifications_of_one_domain_leave_one_verified(
    make_config: ConfigFactory,
) -> None:
    server = BarrierTxtServer(wanted=2)
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(lambda: server, local_addr=("127.0.0.1", 0))
    port = transport.get_extra_info("sockname")[1]
    client = await start_client(make_config(domain_nameservers=(f"127.0.0.1:{port}",)))
    try:
        users = [await register(client), await register(client)]
        claims = [await _claim(client, user, f"race{n}") for n, user in enumerate(users)]
        server.tokens = [token for _, token in claims]
        responses = await asyncio.gather(
            *(
                client.post(path, json={}, headers=u.headers)
                for (path, _), u in zip(claims, users, strict=True)
            )
        )
        statuses = sorted(response.status for response in responses)
        assert statuses == [200, 409]
        [lost] = [response for response in responses if response.status == 409]
        assert await error_code(lost) == "domain_taken"
    finally:
        await client.close()
        transport.close()
