"""Hot endpoints: served ahead of routing, documented and refused like every other route.

A hot endpoint takes the `Request` and returns a `Response` itself (no dependency solving, no
response model), so it can skip what the framework does per request: FastAPI's exit stack, the
router's matching and the route's request/response wrapper. `HotPaths`, the app's innermost
middleware, serves each exact (method, path) registered with `add_hot_route` straight from its
endpoint; the route object itself is in the router too, so the OpenAPI document shows it and
another method on the path is the router's 405. What the endpoint raises is handed to Starlette's
public `ExceptionMiddleware` with the app's own handlers (only then: a granted request pays
nothing for it), so a refusal is answered exactly as a routed one is; what no handler takes is
the server error it always is.
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


class _Raise:
    """An ASGI app that raises `error`: how a hot endpoint's exception is handed to
    Starlette's `ExceptionMiddleware`, which finds the app's handler for it."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        raise self.error


class HotTable:
    """The app's hot endpoints by (method, path)."""

    def __init__(self, owner: FastAPI) -> None:
        self.owner = owner
        self.routes: dict[tuple[str, str], HotRoute] = {}

    def add(self, method: str, route: HotRoute) -> None:
        """Serve `method route.path` from `route`'s endpoint."""
        self.routes[(method, route.path)] = route


class HotPaths:
    """Pure ASGI middleware serving the hot endpoints of `table` by exact (method, path).

    Everything else, including other methods and a trailing slash, goes on to routing. Under a
    `root_path` the path is taken relative to it, as the router does.
    """

    def __init__(self, app: ASGIApp, table: HotTable) -> None:
        self.app = app
        self._table = table

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = None
        if scope["type"] == "http":
            path: str = scope["path"]
            root = scope.get("root_path", "")
            if root and path.startswith(root):
                path = path[len(root) :]
            route = self._table.routes.get((scope["method"], path))
        if route is None:
            await self.app(scope, receive, send)
            return
        scope["route"] = route  # the route template, for the latency metric
        try:
            response = await route.endpoint(Request(scope, receive, send))
        except Exception as error:  # noqa: BLE001 - handed on whole, handled or raised again
            # The app's own handler answers, as for a routed endpoint (none: the server error).
            # Made per refusal: `ExceptionMiddleware` copies the app's table, complete by now.
            # A handler for 500 or `Exception` is the server error middleware's, as Starlette
            # splits them when it builds the app's stack.
            handlers = {
                key: handler
                for key, handler in self._table.owner.exception_handlers.items()
                if key not in (500, Exception)
            }
            await ExceptionMiddleware(_Raise(error), handlers=handlers)(scope, receive, send)
            return
        await response(scope, receive, send)


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
