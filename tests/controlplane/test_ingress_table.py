"""The routing table and custom-domain names, decided without I/O."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from controlplane.api.deployment_schemas import CreateDeployment
from controlplane.config import ControlPlaneConfig
from controlplane.db.tables.orchestration import Deployment, Replica
from controlplane.ingress.domain_names import InvalidDomain, normalise_domain
from controlplane.ingress.table import NodeReach, app_url, build_routes

NODE = str(uuid.uuid4())


def _deployment(name: str, ports: list[int], **fields: Any) -> Deployment:
    return Deployment(user_id=uuid.uuid4(), app_name=name, image="x", ports=ports, **fields)


def _replica(deployment: Deployment, ordinal: int, host_ports: list[int]) -> Replica:
    return Replica(
        deployment_id=deployment.id, ordinal=ordinal, node_id=uuid.UUID(NODE), host_ports=host_ports
    )


def test_only_ready_replicas_are_upstreams_on_the_web_port() -> None:
    web = _deployment("web", [7000, 8080], http_port=8080)
    a, b = _replica(web, 0, [31000, 31001]), _replica(web, 1, [31002, 31003])
    nodes = {NODE: NodeReach(address="10.0.0.5", ready=frozenset({str(a.id)}))}
    (route,) = build_routes([web], [a, b], nodes, suffix="apps.test", tls=False)
    assert list(route.hosts) == ["web.apps.test"]
    assert [u.address for u in route.upstreams] == ["10.0.0.5:31001"]
    assert not route.stopped


def test_stopped_and_portless_deployments() -> None:
    stopped = _deployment("off", [80], running=False)
    worker = _deployment("worker", [])
    routes = build_routes([stopped, worker], [], {}, suffix="apps.test", tls=True)
    assert [(r.id, r.stopped, r.tls) for r in routes] == [(str(stopped.id), True, True)]


def test_two_owners_apps_of_one_name_the_older_keeps_the_host() -> None:
    now = datetime.now(UTC)
    old = _deployment("blog", [80], created_at=now - timedelta(days=1))
    new = _deployment("blog", [80], created_at=now)
    domains = {str(new.id): ["blog.example"]}
    routes = build_routes([new, old], [], {}, suffix="s.test", tls=False, domains=domains)
    assert [list(r.hosts) for r in routes] == [["blog.s.test"], ["blog.example"]]


def test_urls_carry_the_scheme_and_port_the_ingress_serves() -> None:
    assert app_url(ControlPlaneConfig(), "a") is None
    https = ControlPlaneConfig(domain_suffix="apps.example.com")
    assert app_url(https, "a") == "https://a.apps.example.com"
    local = ControlPlaneConfig(
        domain_suffix="localhost", ingress_tls="off", ingress_public_port=8080
    )
    assert app_url(local, "a") == "http://a.localhost:8080"


@pytest.mark.parametrize(
    ("raw", "expected"), [("Shop.Example.", "shop.example"), ("bücher.de", "xn--bcher-kva.de")]
)
def test_domains_are_normalised(raw: str, expected: str) -> None:
    assert normalise_domain(raw, "apps.test") == expected


@pytest.mark.parametrize(
    "raw",
    ["", "1.2.3.4", "[::1]", "::1", "10.0.0.1.", "nodot", "a..b", "-a.com", "bad_name.com",
     "apps.test", "x.apps.test", "a." * 130 + "com"],
)  # fmt: skip
def test_bad_domains_are_refused(raw: str) -> None:
    with pytest.raises(InvalidDomain):
        normalise_domain(raw, "apps.test")


def test_http_port_must_be_one_of_the_ports() -> None:
    body = {"app_name": "web", "image": "busybox", "ports": [80, 8080]}
    assert CreateDeployment.model_validate({**body, "http_port": 8080}).http_port == 8080
    with pytest.raises(ValidationError, match="http_port"):
        CreateDeployment.model_validate({**body, "http_port": 81})
