"""A `RouteTable` as Caddy's JSON config: pure, no I/O.

One server per port: plain HTTP on `http_port` for every route, HTTPS on
`https_port` for routes with `tls`. Hosts that match nothing get a 404 page; a
stopped deployment (or one with no ready replica) a plain 503 page. Every route
object carries an `@id` (`<server>-<deployment id>`) so that it can be read or
patched alone under `/id/...` of the admin API.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from protos import agent_pb2 as pb

CHALLENGE_PREFIX = "/.well-known/encedeus/"
NOT_FOUND_BODY = "404: no app is served at this address.\n"
STOPPED_BODY = "503: this app is stopped.\n"
UNAVAILABLE_BODY = "503: this app has no ready replica right now.\n"
# A replica that failed MAX_FAILS requests (a refused or timed-out dial, a 502-504
# answer) within FAIL_DURATION is left out for FAIL_DURATION. One failure is not
# enough: with one replica, a single dropped SYN or 502 made the next 10 s all 503s.
FAIL_DURATION = "10s"
MAX_FAILS = 3
# Idle upstream connections kept per replica. Caddy's default (32) is below the
# concurrency of an ordinary load: every request past it closes its upstream
# connection afterwards and the next one dials again (bench/ingress.py: about 500 new
# connections in 4 s at 50 clients, none with this pool).
IDLE_CONNECTIONS_PER_REPLICA = 1024


@dataclass(frozen=True, slots=True)
class CaddySettings:
    """Where this node's Caddy listens and keeps its state."""

    admin_listen: str  # "unix//path/admin.sock" or "127.0.0.1:2019"
    http_port: int
    https_port: int
    storage_dir: str
    bind_host: str = ""  # empty: every address


def _plain(status: int, body: str) -> dict[str, Any]:
    return {
        "handler": "static_response",
        "status_code": status,
        "body": body,
        "headers": {"Content-Type": ["text/plain; charset=utf-8"]},
        "close": False,
    }


def _proxy(route: pb.Route, dials: Mapping[str, str]) -> dict[str, Any]:
    return {
        "handler": "reverse_proxy",
        "upstreams": [
            {"dial": dials.get(upstream.address, upstream.address)} for upstream in route.upstreams
        ],
        "load_balancing": {
            "selection_policy": {"policy": "round_robin"},
            # A dial that fails is retried on another replica instead of failing
            # the request: a killed container costs no request.
            "try_duration": "3s",
            "try_interval": "50ms",
        },
        "health_checks": {
            "passive": {
                "fail_duration": FAIL_DURATION,
                "max_fails": MAX_FAILS,
                "unhealthy_status": [502, 503, 504],
            }
        },
        "transport": {
            "protocol": "http",
            # Given at all, keep_alive replaces every default: restate Caddy's.
            "keep_alive": {
                "max_idle_conns_per_host": IDLE_CONNECTIONS_PER_REPLICA,
                "idle_timeout": "2m",
                "probe_interval": "30s",
            },
        },
    }


def route_handler(route: pb.Route, dials: Mapping[str, str] | None = None) -> dict[str, Any]:
    """What a request for one of the route's hosts gets; `dials` maps an upstream
    address to the one Caddy dials instead (agent/ingress/local_upstreams.py)."""
    if route.stopped:
        return _plain(503, STOPPED_BODY)
    if not route.upstreams:
        return _plain(503, UNAVAILABLE_BODY)
    return _proxy(route, dials or {})


def _routes(
    table: pb.RouteTable, server: str, routes: list[pb.Route], dials: Mapping[str, str]
) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [
        {
            "match": [{"host": [domain], "path": [CHALLENGE_PREFIX + token]}],
            "handle": [_plain(200, token)],
            "terminal": True,
        }
        for token, domain in sorted(table.challenges.items())
    ]
    out.extend(
        {
            "@id": f"{server}-{route.id}",
            "match": [{"host": list(route.hosts)}],
            "handle": [route_handler(route, dials)],
            "terminal": True,
        }
        for route in routes
        if route.hosts
    )
    out.append({"handle": [_plain(404, NOT_FOUND_BODY)]})
    return out


def _listen(settings: CaddySettings, port: int) -> list[str]:
    return [f"{settings.bind_host}:{port}"]


def _tls_app(table: pb.RouteTable) -> dict[str, Any]:
    policy: dict[str, Any] = {}
    if table.tls_issuer == "internal":
        policy["issuers"] = [{"module": "internal"}]
    automation: dict[str, Any] = {"policies": [policy]}
    if table.ask_url:
        policy["on_demand"] = True
        automation["on_demand"] = {"ask": table.ask_url}
    return {"automation": automation}


def _admin(settings: CaddySettings) -> dict[str, Any]:
    admin: dict[str, Any] = {"listen": settings.admin_listen, "config": {"persist": False}}
    if settings.admin_listen.startswith("unix/"):
        # Over a unix socket Caddy 2.6 allows only an empty Host unless told otherwise.
        admin["origins"] = ["localhost"]
    return admin


def caddy_config(
    table: pb.RouteTable, settings: CaddySettings, dials: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """The whole Caddy config serving `table` (also for an empty table), dialling
    `dials[address]` instead of an upstream `address` it names."""
    tls_routes = [route for route in table.routes if route.tls]
    servers: dict[str, Any] = {
        "http": {
            "listen": _listen(settings, settings.http_port),
            "routes": _routes(table, "http", list(table.routes), dials or {}),
            # Plain HTTP stays plain: no redirect to HTTPS is added to this server.
            "automatic_https": {"disable_redirects": True},
        }
    }
    apps: dict[str, Any] = {
        "http": {
            "http_port": settings.http_port,
            "https_port": settings.https_port,
            "servers": servers,
        },
        # Never write the internal CA into this machine's trust store.
        "pki": {"certificate_authorities": {"local": {"install_trust": False}}},
    }
    if tls_routes:
        servers["https"] = {
            "listen": _listen(settings, settings.https_port),
            "routes": _routes(table, "https", tls_routes, dials or {}),
            "automatic_https": {"disable_redirects": True},
        }
        apps["tls"] = _tls_app(table)
    return {
        # The admin endpoint must survive every /load: it is part of each config.
        "admin": _admin(settings),
        "storage": {"module": "file_system", "root": settings.storage_dir},
        "apps": apps,
    }
