"""Hot endpoints: served ahead of routing, documented and refused like every other route.

A hot endpoint takes the `Request` and returns a `Response` itself (no dependency solving, no
response model), so it can skip what the framework does per request: FastAPI's exit stack, the
router's matching and the route's request/response wrapper. `HotPaths`, the app's innermost
middleware, serves each exact (method, path) registered with `add_hot_route` straight from its
endpoint; the route object itself is in the router too, so the OpenAPI document shows it and
another method on the path is the router's 405. What the endpoint raises meets the app's own
exception handlers through Starlette's public `ExceptionMiddleware`, so a refusal is answered
exactly as a routed one is; what no handler takes is the server error it always is.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.middleware.exceptions import ExceptionMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match, Route, request_response
from starlette.types import ASGIApp, Receive, Scope, Send

Endpoint = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True)
class RouteDoc:
    """What the OpenAPI document says of a hot endpoint (as `APIRouter.add_api_route` takes)."""

    summary: str
    tags: Sequence[str] = ()
    description: str | None = None
    responses: Mapping[int | str, dict[str, Any]] = field(default_factory=dict)
    openapi_extra: dict[str, Any] | None = None


class HotRoute(APIRoute):
    """A hot endpoint's route: documented from its own arguments (summary, responses, body
    schema) like any API route, matched and served like a Starlette `Route`."""

    def __init__(self, path: str, endpoint: Endpoint, method: str, doc: RouteDoc) -> None:
        super().__init__(
            path,
            endpoint,
            methods=[method],
            tags=list(doc.tags),
            summary=doc.summary,
            description=doc.description,
            responses=dict(doc.responses),
            openapi_extra=doc.openapi_extra,
        )
        self.app = request_response(endpoint)

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        return cast(Callable[[Request], Coroutine[Any, Any, Response]], self.endpoint)

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        match, child_scope = Route.matches(self, scope)
        if match is not Match.NONE:
            child_scope["route"] = self  # the route template for the latency metric
        return match, child_scope

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        await Route.handle(self, scope, receive, send)


class _Served:
    """One hot endpoint as an ASGI app: its request, its response."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = await self.endpoint(Request(scope, receive, send))
        await response(scope, receive, send)


class HotTable:
    """The app's hot endpoints by (method, path), each with the app's exception handling."""

    def __init__(self, owner: FastAPI) -> None:
        self._owner = owner
        self._routes: dict[tuple[str, str], HotRoute] = {}
        self._lanes: dict[tuple[str, str], tuple[HotRoute, ASGIApp]] | None = None

    def add(self, method: str, route: HotRoute) -> None:
        """Serve `method route.path` from `route`'s endpoint."""
        self._routes[(method, route.path)] = route
        self._lanes = None

    def lanes(self) -> dict[tuple[str, str], tuple[HotRoute, ASGIApp]]:
        """Each hot (method, path) with its route and the ASGI app that serves it."""
        # Built on first use: every exception handler is registered by then, and
        # `ExceptionMiddleware` copies its table when it is made.
        if self._lanes is None:
            handlers = self._owner.exception_handlers
            self._lanes = {
                key: (route, ExceptionMiddleware(_Served(route.endpoint), handlers=handlers))
                for key, route in self._routes.items()
            }
        return self._lanes


class HotPaths:
    """Pure ASGI middleware serving the hot endpoints of `table` by exact (method, path).

    Everything else, including other methods and a trailing slash, goes on to routing. Under a
    `root_path` the path is taken relative to it, as the router does.
    """

    def __init__(self, app: ASGIApp, table: HotTable) -> None:
        self.app = app
        self._table = table

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        lane = None
        if scope["type"] == "http":
            path: str = scope["path"]
            root = scope.get("root_path", "")
            if root and path.startswith(root):
                path = path[len(root) :]
            lane = self._table.lanes().get((scope["method"], path))
        if lane is None:
            await self.app(scope, receive, send)
            return
        route, served = lane
        scope["route"] = route  # the route template, for the latency metric
        await served(scope, receive, send)


def install(app: FastAPI) -> None:
    """Give `app` its (empty) hot-endpoint table and the `HotPaths` middleware that serves it.

    Call it before any other middleware is added: hot endpoints still pass the app's own
    (metrics, edge) on their way, as every request does.
    """
    app.state.hot_paths = HotTable(app)
    app.add_middleware(HotPaths, table=app.state.hot_paths)


def add_hot_route(app: FastAPI, method: str, path: str, endpoint: Endpoint, doc: RouteDoc) -> None:
    """Serve `method path` from `endpoint` ahead of routing, documented by `doc`."""
    hot = HotRoute(path, endpoint, method, doc)
    app.router.routes.append(hot)
    table: HotTable = app.state.hot_paths
    table.add(method, hot)
