"""Prometheus metrics of the HTTP API, in a registry owned by one application."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import generate_latest

from controlplane.state import METRICS


class ApiMetrics:
    """Request count, latency and errors by method and route template.

    The route label is the template (`/v1/api-keys/{id}`), never the raw path, so
    the number of series stays bounded. Other components may register their own
    collectors on `registry`.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "encedeus_http_requests_total",
            "HTTP requests answered",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "encedeus_http_request_duration_seconds",
            "Time to answer an HTTP request",
            ["method", "route"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self._series: dict[tuple[str, str, int], tuple[Counter, Histogram, Counter | None]] = {}
        self.errors = Counter(
            "encedeus_http_errors_total",
            "HTTP responses with status >= 400, by error class",
            ["method", "route", "status"],
            registry=self.registry,
        )

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        """Record one answered request."""
        key = (method, route, status)
        series = self._series.get(key)
        if series is None:
            # labels() takes a lock and builds tuples; resolve each series once.
            series = (
                self.requests.labels(method, route, str(status)),
                self.latency.labels(method, route),
                self.errors.labels(method, route, str(status)) if status >= 400 else None,
            )
            self._series[key] = series
        requests, latency, errors = series
        requests.inc()
        latency.observe(seconds)
        if errors is not None:
            errors.inc()


async def serve_metrics(request: web.Request) -> web.Response:
    """The Prometheus text exposition."""
    body = generate_latest(request.app[METRICS].registry)
    response = web.Response(body=body)
    response.content_type = CONTENT_TYPE_LATEST.split(";")[0]
    response.charset = "utf-8"
    return response
