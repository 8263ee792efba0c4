"""Prometheus metrics: one `CollectorRegistry` per app, so tests can build many apps.

Other components register their own collectors on `Metrics.registry`; `GET /metrics` serves it.
Request latency is measured by a plain ASGI middleware (not `BaseHTTPMiddleware`, which costs a
task per request) labelled with the route template, never the raw path, to bound cardinality.
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import generate_latest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Router
from starlette.types import ASGIApp, Receive, Scope, Send

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Metrics:
    """The app's registry and the auth component's collectors."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.tokens_issued = Counter(
            "parkfleet_tokens_issued",
            "Access tokens issued by the token endpoint.",
            ["audience"],
            registry=self.registry,
        )
        self.tokens_refused = Counter(
            "parkfleet_tokens_refused",
            "Token requests refused, by OAuth error code.",
            ["reason"],
            registry=self.registry,
        )
        self.token_checks = Counter(
            "parkfleet_token_checks",
            "Bearer token checks at protected resources, by outcome.",
            ["result"],  # cache_hit | verified | refused
            registry=self.registry,
        )
        self.jwks_fetches = Counter(
            "parkfleet_jwks_fetches",
            "Fetches of a remote JWKS by the token verifier.",
            registry=self.registry,
        )
        self.request_latency = Histogram(
            "parkfleet_http_request_duration_seconds",
            "HTTP request latency by route template and method.",
            ["route", "method"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )

    def render(self) -> Response:
        """The registry in the Prometheus text format."""
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)


class LatencyMiddleware:
    """Observe each HTTP request's duration into `Metrics.request_latency`."""

    def __init__(self, app: ASGIApp, metrics: Metrics, router: Router) -> None:
        self.app = app
        self.metrics = metrics
        self.router = router
        self._children: dict[tuple[str, str], Any] = {}
        self._paths: dict[Any, str] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        try:
            await self.app(scope, receive, send)
        finally:
            key = (self._template(scope), scope["method"])
            child = self._children.get(key)
            if child is None:
                child = self._children[key] = self.metrics.request_latency.labels(*key)
            child.observe(time.perf_counter() - start)

    def _template(self, scope: Scope) -> str:
        # FastAPI routes put themselves into the scope; plain Starlette routes only their
        # endpoint, so look that up among the router's routes.
        route = scope.get("route")
        if route is not None:
            return str(route.path)
        endpoint = scope.get("endpoint")
        if endpoint is None:
            return "unmatched"
        if not self._paths:
            self._paths = {
                getattr(r, "endpoint", None): str(getattr(r, "path", ""))
                for r in self.router.routes
            }
        return self._paths.get(endpoint, "unmatched")


async def metrics_endpoint(request: Request) -> Response:
    """`GET /metrics`."""
    metrics: Metrics = request.app.state.ctx.metrics
    return metrics.render()
