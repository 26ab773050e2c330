"""Prometheus metrics of the HTTP API, in a registry owned by one application."""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Iterator

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry
from prometheus_client import metrics as prometheus_metrics
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

from controlplane.state import METRICS

REQUESTS = ("encedeus_http_requests_total", "HTTP requests answered")
LATENCY = ("encedeus_http_request_duration_seconds", "Time to answer an HTTP request")
ERRORS = ("encedeus_http_errors_total", "HTTP responses with status >= 400, by error class")
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
_BOUNDS = (*(float(bound) for bound in BUCKETS), float("inf"))
#: The `le` labels, written as prometheus_client writes them ("0.001", "1.0", "+Inf").
_LE: tuple[str, ...] = tuple(floatToGoString(bound) for bound in _BOUNDS)  # type: ignore[no-untyped-call]


class _Latency:
    """One histogram series: per-bucket counts (not cumulative), sum, creation."""

    __slots__ = ("counts", "created", "total")

    def __init__(self) -> None:
        self.counts = [0] * len(_BOUNDS)
        self.total = 0.0
        self.created = time.time()


class _Answers:
    """One (method, route, status) series: its count and its latency histogram."""

    __slots__ = ("count", "created", "latency")

    def __init__(self, latency: _Latency) -> None:
        self.count = 0
        self.created = time.time()
        self.latency = latency


class ApiMetrics(Collector):
    """Request count, latency and errors by method and route template.

    The route label is the template (`/v1/api-keys/{id}`), never the raw path, so
    the number of series stays bounded. Other components may register their own
    collectors on `registry`.

    The series are plain numbers updated by the event loop (prometheus_client's
    Counter and Histogram take a lock per update: three per request) and exposed as
    those would be, `_created` samples included. Only the event loop may observe.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._answers: dict[tuple[str, str, int], _Answers] = {}
        self._latencies: dict[tuple[str, str], _Latency] = {}
        self.registry.register(self)

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        """Record one answered request."""
        answers = self._answers.get((method, route, status))
        if answers is None:
            answers = self._new_series(method, route, status)
        answers.count += 1
        latency = answers.latency
        latency.counts[bisect_left(_BOUNDS, seconds)] += 1
        latency.total += seconds

    def _new_series(self, method: str, route: str, status: int) -> _Answers:
        latency = self._latencies.get((method, route))
        if latency is None:
            latency = self._latencies[(method, route)] = _Latency()
        answers = self._answers[(method, route, status)] = _Answers(latency)
        return answers

    def collect(self) -> Iterator[Metric]:
        """The three families, in the order and shape of prometheus_client's own."""
        created = bool(getattr(prometheus_metrics, "_use_created", True))
        requests = CounterMetricFamily(*REQUESTS, labels=("method", "route", "status"))
        errors = CounterMetricFamily(*ERRORS, labels=("method", "route", "status"))
        for (method, route, status), answers in list(self._answers.items()):
            labels = (method, route, str(status))
            when = answers.created if created else None
            requests.add_metric(labels, float(answers.count), created=when)
            if status >= 400:
                errors.add_metric(labels, float(answers.count), created=when)
        yield requests
        yield self._latency_family(created)
        yield errors

    def _latency_family(self, created: bool) -> HistogramMetricFamily:
        name, documentation = LATENCY
        family = HistogramMetricFamily(name, documentation, labels=("method", "route"))
        for (method, route), latency in list(self._latencies.items()):
            cumulative, buckets = 0, []
            for le, count in zip(_LE, latency.counts, strict=True):
                cumulative += count
                buckets.append((le, float(cumulative)))
            family.add_metric((method, route), buckets, latency.total)
            if created:
                labels = {"method": method, "route": route}
                family.samples.append(Sample(f"{name}_created", labels, latency.created))
        return family


async def serve_metrics(request: web.Request) -> web.Response:
    """The Prometheus text exposition."""
    body = generate_latest(request.app[METRICS].registry)
    response = web.Response(body=body)
    response.content_type = CONTENT_TYPE_LATEST.split(";")[0]
    response.charset = "utf-8"
    return response
