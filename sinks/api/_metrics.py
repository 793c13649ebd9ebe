"""Prometheus metrics of the API process (served on its own ``/metrics``)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)

from telemetry import MetricSet

__all__ = ["ApiMetrics", "metrics_middleware"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ApiMetrics(MetricSet):
    """Requests by route and status class, and their duration (to the last byte)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__(registry)
        self.requests = Counter(
            "civicstream_api_requests",
            "HTTP requests answered, by route (the pattern, not the path) and status class.",
            ["route", "status"],
            registry=registry,
        )
        self.seconds = Histogram(
            "civicstream_api_request_seconds",
            "Time to answer a request, until its last byte was written (streamed exports too).",
            ["route"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0),
            registry=registry,
        )

    async def page(self, _request: web.Request) -> web.StreamResponse:
        """``GET /metrics``: this registry in Prometheus' text format."""
        return web.Response(
            body=generate_latest(self.registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )


def _route(request: web.Request) -> str:
    """The matched route's pattern (low cardinality), or ``other`` for unmatched paths."""
    info = request.match_info
    route = info.route if info is not None else None
    if route is None or route.resource is None or info.http_exception is not None:
        return "other"
    return route.resource.canonical


def metrics_middleware(metrics: ApiMetrics) -> Middleware:
    """Count and time every request (errors included) under its route pattern."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as error:
            status = error.status
            raise
        finally:
            route = _route(request)
            metrics.requests.labels(route, f"{status // 100}xx").inc()
            metrics.seconds.labels(route).observe(time.perf_counter() - started)

    return middleware
