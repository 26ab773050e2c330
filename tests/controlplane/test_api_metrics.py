"""The API's metrics read exactly as prometheus_client's Counter and Histogram would."""

from __future__ import annotations

import re

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import generate_latest

from controlplane.api.metrics import BUCKETS, ERRORS, LATENCY, REQUESTS, ApiMetrics

OBSERVED = [
    ("GET", "/v1/user/profile", 200, 0.0004),
    ("GET", "/v1/user/profile", 200, 0.001),  # on a bucket's bound: counted in it
    ("GET", "/v1/user/profile", 401, 0.003),
    ("POST", "/v1/api-keys", 201, 0.2),
    ("GET", "unmatched", 404, 0.00001),
    ("GET", "/v1/user/profile", 200, 42.0),  # past the last bound: +Inf only
]


def _reference() -> bytes:
    registry = CollectorRegistry(auto_describe=True)
    requests = Counter(*REQUESTS, ["method", "route", "status"], registry=registry)
    latency = Histogram(*LATENCY, ["method", "route"], registry=registry, buckets=BUCKETS)
    errors = Counter(*ERRORS, ["method", "route", "status"], registry=registry)
    for method, route, status, seconds in OBSERVED:
        requests.labels(method, route, str(status)).inc()
        latency.labels(method, route).observe(seconds)
        if status >= 400:
            errors.labels(method, route, str(status)).inc()
    return generate_latest(registry)


def _without_timestamps(exposition: bytes) -> str:
    # `_created` samples hold the time each series appeared.
    return re.sub(r"(_created\{[^}]*\}) \S+", r"\1 T", exposition.decode())


def test_exposition_matches_prometheus_clients_own_metrics() -> None:
    metrics = ApiMetrics()
    for observation in OBSERVED:
        metrics.observe(*observation)
    ours = _without_timestamps(generate_latest(metrics.registry))
    assert ours == _without_timestamps(_reference())
    bucket = 'encedeus_http_request_duration_seconds_bucket{le="0.001",method="GET",'
    assert bucket + 'route="/v1/user/profile"} 2.0' in ours
