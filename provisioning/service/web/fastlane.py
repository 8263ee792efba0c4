"""`FastLane`: the hottest endpoints served straight from their route, inside the app's own
middleware but past the framework's per-request layers.

Each request otherwise passes Starlette's exception middleware, FastAPI's exit stack, the
router's matching and the route's request/response wrapper, before a `RawRoute` endpoint that
needs none of them: ~100 µs of the token endpoint's ~700 µs of CPU (measured in-process). A
lane is an exact (method, path); everything else, and any path under a `root_path`, goes the
usual way. What the endpoint raises meets the app's own exception handlers, looked up as
Starlette does, so answers are the same either way; what no handler takes is the server error
it always was.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from starlette._utils import is_async_callable
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from provisioning.service.web.rawroute import RawRoute

Handler = Callable[[Request, Any], Response | Awaitable[Response]]


class FastLane:
    """Pure ASGI middleware: `lanes` maps (method, path) to the `RawRoute` serving it;
    `handlers` is the app's exception-handler table (filled as the app is built)."""

    def __init__(
        self,
        app: ASGIApp,
        lanes: Mapping[tuple[str, str], RawRoute],
        handlers: Mapping[Any, Handler],
    ) -> None:
        self.app = app
        self._lanes = lanes
        self._handlers = handlers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = None
        if scope["type"] == "http" and not scope.get("root_path"):
            route = self._lanes.get((scope["method"], scope["path"]))
        if route is None:
            await self.app(scope, receive, send)
            return
        scope["route"] = route  # the route template, for the latency metric
        request = Request(scope, receive, send)
        endpoint: Callable[[Request], Awaitable[Response]] = route.endpoint
        try:
            response = await endpoint(request)
        except Exception as error:
            handler = self._handler(error)
            if handler is None:
                raise
            if is_async_callable(handler):
                response = await handler(request, error)
            else:
                response = await run_in_threadpool(handler, request, error)  # type: ignore[arg-type]
        await response(scope, receive, send)

    def _handler(self, error: Exception) -> Handler | None:
        for kind in type(error).__mro__:
            if kind in self._handlers:
                return self._handlers[kind]
        return None
