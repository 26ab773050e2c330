"""Per-port protocols in the deployment API: plain integers stay TCP (seed 004),
objects name "tcp", "udp" or "tcp+udp"; bad ones are 400 in the error envelope and
store nothing; the ingress never routes web traffic to a UDP-only port. Runs on
SQLite and PostgreSQL."""

from __future__ import annotations

import argparse
import uuid
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from controlplane.client.deployment_commands import port_argument, published_ports
from controlplane.db.tables import Deployment, Replica
from controlplane.ingress.table import web_port_index
from controlplane.reconciler.world import server_spec
from controlplane.state import DATABASE
from tests.controlplane.accounts_support import error_code, expect_json, register

Client = TestClient[Any, Any]
pytestmark = pytest.mark.usefixtures("blocking_guard")
OWNER = uuid.uuid4()
BASE = {"app_name": "game", "image": "encedeus/busybox:latest", "replicas": 0}


async def test_ports_keep_their_protocols_and_integers_mean_tcp(api: Client) -> None:
    owner = await register(api)
    body = {**BASE, "port": 8080, "ports": [
        {"port": 25565, "protocol": "udp"}, 9000, {"port": 27015, "protocol": "tcp+udp"},
    ]}  # fmt: skip
    created = await expect_json(await api.post("/v1/deployments", json=body,
                                               headers=owner.headers), 201)  # fmt: skip
    path = f"/v1/deployments/{created['id']}"
    shown = await expect_json(await api.get(path, headers=owner.headers))
    assert shown["ports"] == [8080, 25565, 9000, 27015]
    assert shown["port_protocols"] == ["tcp", "udp", "tcp", "tcp+udp"]
    await expect_json(await api.put(path, json={"ports": [
        8081, {"port": 25566, "protocol": "tcp"}, {"port": 9001, "protocol": "udp"}, 27016,
    ]}, headers=owner.headers))  # fmt: skip
    shown = await expect_json(await api.get(path, headers=owner.headers))
    assert shown["ports"] == [8081, 25566, 9001, 27016]
    assert shown["port_protocols"] == ["tcp", "tcp", "udp", "tcp"]
    assert shown["generation"] == 2
    # A protocol alone is a change of the containers: a new generation.
    same_numbers = [8081, 25566, 9001, {"port": 27016, "protocol": "udp"}]
    await expect_json(await api.put(path, json={"ports": same_numbers}, headers=owner.headers))
    shown = await expect_json(await api.get(path, headers=owner.headers))
    assert (shown["port_protocols"][3], shown["generation"]) == ("udp", 3)
    await expect_json(await api.put(path, json={"ports": same_numbers}, headers=owner.headers))
    assert (await expect_json(await api.get(path, headers=owner.headers)))["generation"] == 3


@pytest.mark.parametrize(
    ("change", "wanted"),
    [
        ({"ports": [{"port": 53, "protocol": "sctp"}]}, "protocol"),
        ({"ports": [{"port": 53, "protocol": "UDP "}]}, "protocol"),
        ({"ports": [{"port": 70000, "protocol": "udp"}]}, "port"),
        ({"ports": [{"protocol": "udp"}]}, "port"),
        ({"ports": [{"port": 53, "protocol": "udp", "extra": 1}]}, "extra"),
        ({"ports": [{"port": 53, "protocol": "tcp"}, {"port": 53, "protocol": "udp"}]}, "tcp+udp"),
        ({"port": 53, "ports": [{"port": 53, "protocol": "udp"}]}, "tcp+udp"),
        ({"ports": [{"port": 53, "protocol": "udp"}], "http_port": 53}, "TCP"),
    ],
)
async def test_bad_port_protocols_are_refused_and_nothing_is_stored(
    api: Client, change: dict[str, Any], wanted: str
) -> None:
    owner = await register(api)
    refused = await api.post("/v1/deployments", json={**BASE, **change}, headers=owner.headers)
    assert refused.status == 400, await refused.text()
    body = await refused.json()
    assert body["error"]["code"] == "validation_error"
    assert wanted in str(body["error"]), body
    listed = await expect_json(await api.get("/v1/deployments", headers=owner.headers))
    assert listed["deployments"] == []


async def test_a_bad_protocol_in_an_update_changes_nothing(api: Client) -> None:
    owner = await register(api)
    created = await expect_json(await api.post("/v1/deployments", json={
        **BASE, "ports": [{"port": 53, "protocol": "udp"}],
    }, headers=owner.headers), 201)  # fmt: skip
    path = f"/v1/deployments/{created['id']}"
    refused = await api.put(path, json={"ports": [{"port": 54, "protocol": "icmp"}]},
                            headers=owner.headers)  # fmt: skip
    assert refused.status == 400
    assert await error_code(refused) == "validation_error"
    kept = await expect_json(await api.get(path, headers=owner.headers))
    assert (kept["ports"], kept["port_protocols"], kept["generation"]) == ([53], ["udp"], 1)


async def test_rows_from_before_protocols_keep_their_generation_for_the_same_ports(
    api: Client,
) -> None:
    owner = await register(api)
    created = await expect_json(await api.post("/v1/deployments", json={**BASE, "ports": [80]},
                                               headers=owner.headers), 201)  # fmt: skip
    async with api.app[DATABASE].transaction() as session:
        row = await session.get(Deployment, uuid.UUID(created["id"]))
        assert row is not None
        row.port_protocols = []  # as migration 0017 leaves image-made rows
        session.add(row)
    path = f"/v1/deployments/{created['id']}"
    await expect_json(await api.put(path, json={"ports": [80]}, headers=owner.headers))
    shown = await expect_json(await api.get(path, headers=owner.headers))
    assert (shown["port_protocols"], shown["generation"]) == (["tcp"], 1)


def test_the_agent_gets_one_binding_per_protocol_on_one_host_port() -> None:
    deployment = Deployment(user_id=OWNER, app_name="g", image="i", ports=[8080, 25565, 27015],
                            port_protocols=["tcp", "udp", "tcp+udp"])  # fmt: skip
    replica = Replica(deployment_id=deployment.id, ordinal=0, host_ports=[31000, 31001, 31002])
    spec = server_spec(deployment, replica, "node")
    assert [(p.container_port, p.host_port, p.protocol) for p in spec.ports] == [
        (8080, 31000, "tcp"), (25565, 31001, "udp"), (27015, 31002, "tcp"),
        (27015, 31002, "udp"),
    ]  # fmt: skip
    old_row = Deployment(
        user_id=OWNER, app_name="g", image="i", ports=[80]
    )  # stored before protocols
    assert [p.protocol for p in server_spec(old_row, replica, "n").ports] == ["tcp"]


def test_the_web_port_is_the_first_tcp_one() -> None:
    udp_first = Deployment(user_id=OWNER, app_name="g", image="i", ports=[25565, 8080],
                           port_protocols=["udp", "tcp"])  # fmt: skip
    assert web_port_index(udp_first) == 1
    udp_only = Deployment(
        user_id=OWNER, app_name="g", image="i", ports=[25565], port_protocols=["udp"]
    )
    assert web_port_index(udp_only) is None
    udp_asked = Deployment(user_id=OWNER, app_name="g", image="i", ports=[53, 80],
                           port_protocols=["udp", "tcp"], http_port=53)  # fmt: skip
    assert web_port_index(udp_asked) == 1


def test_the_cli_takes_a_protocol_after_the_port_and_shows_it() -> None:
    assert port_argument("8080") == {"port": 8080, "protocol": "tcp"}
    assert port_argument("25565/udp") == {"port": 25565, "protocol": "udp"}
    assert port_argument("27015/tcp+udp") == {"port": 27015, "protocol": "tcp+udp"}
    for bad in ("udp", "53/sctp", "53/", "-1"):
        with pytest.raises(argparse.ArgumentTypeError):
            port_argument(bad)
    replica = {"ports": [
        {"host_port": 31000, "container_port": 8080, "protocol": "tcp"},
        {"host_port": 31001, "container_port": 53, "protocol": "udp"},
    ]}  # fmt: skip
    assert published_ports(replica) == "31000->8080,31001->53/udp"
