"""The routing table as Caddy JSON (pure; the real Caddy runs in tests/e2e/test_ingress.py)."""

from __future__ import annotations

from agent.ingress.caddy_config import CaddySettings, caddy_config
from protos import agent_pb2 as pb

SETTINGS = CaddySettings("unix//run/a.sock", 8080, 8443, "/var/lib/tls", "127.0.0.1")


def _table(**fields: object) -> pb.RouteTable:
    web = pb.Route(
        id="d1", hosts=["web.apps.test"], upstreams=[pb.Upstream(address="10.0.0.1:31000")]
    )
    stopped = pb.Route(id="d2", hosts=["off.apps.test"], stopped=True)
    return pb.RouteTable(version=7, routes=[web, stopped], **fields)  # type: ignore[arg-type]


def test_routes_proxy_ready_replicas_stop_with_503_and_end_with_404() -> None:
    config = caddy_config(_table(), SETTINGS)
    server = config["apps"]["http"]["servers"]["http"]
    assert server["listen"] == ["127.0.0.1:8080"]
    web, stopped, fallback = server["routes"]
    assert web["@id"] == "http-d1"
    assert web["match"] == [{"host": ["web.apps.test"]}]
    (proxy,) = web["handle"]
    assert proxy["upstreams"] == [{"dial": "10.0.0.1:31000"}]
    assert proxy["health_checks"]["passive"]["fail_duration"]
    assert proxy["load_balancing"]["try_duration"]
    assert stopped["handle"][0]["status_code"] == 503
    assert fallback["handle"][0]["status_code"] == 404
    assert "match" not in fallback
    # No TLS route: no HTTPS listener, and the admin API keeps its socket.
    assert "https" not in config["apps"]["http"]["servers"]
    assert config["admin"]["listen"] == "unix//run/a.sock"
    assert config["admin"]["config"] == {"persist": False}


def test_tls_routes_get_an_https_server_internal_ca_without_trust_install_and_ask() -> None:
    table = _table(tls_issuer="internal", ask_url="http://127.0.0.1:3000/v1/ingress/ask")
    for route in table.routes:
        route.tls = True
    config = caddy_config(table, SETTINGS)
    assert config["apps"]["http"]["servers"]["https"]["listen"] == ["127.0.0.1:8443"]
    assert config["apps"]["pki"]["certificate_authorities"]["local"]["install_trust"] is False
    automation = config["apps"]["tls"]["automation"]
    assert automation["policies"][0]["issuers"] == [{"module": "internal"}]
    assert automation["on_demand"]["ask"].endswith("/v1/ingress/ask")
    assert config["storage"] == {"module": "file_system", "root": "/var/lib/tls"}


def test_pending_domain_tokens_are_served_before_any_host_route() -> None:
    config = caddy_config(_table(challenges={"tok": "shop.example"}), SETTINGS)
    first = config["apps"]["http"]["servers"]["http"]["routes"][0]
    # Only for the domain it was issued for: pointing one's DNS at the ingress does
    # not let every tenant's pending claim verify.
    assert first["match"] == [{"host": ["shop.example"], "path": ["/.well-known/encedeus/tok"]}]
    assert first["handle"][0]["body"] == "tok"
