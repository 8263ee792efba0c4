"""`RawRoute`: a hot-path API route documented like any other, served like a Starlette `Route`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, cast

from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match, Route, request_response
from starlette.types import Receive, Scope, Send


class RawRoute(APIRoute):
    """An API route whose endpoint takes the `Request` and returns a `Response` itself, as a
    Starlette `Route`'s does: documented from its own arguments (summary, responses, body
    schema), served without FastAPI's per-request dependency solving and response handling."""

    def __init__(
        self, path: str, endpoint: Callable[[Request], Awaitable[Response]], **route: Any
    ) -> None:
        super().__init__(path, endpoint, **route)
        self.app = request_response(endpoint)

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        return cast(Callable[[Request], Coroutine[Any, Any, Response]], self.endpoint)

    # Matched and served as a Starlette `Route` (it is added to the app's router directly, never
    # through `include_router`, so FastAPI's per-include route context never applies).
    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        match, child_scope = Route.matches(self, scope)
        if match is not Match.NONE:
            child_scope["route"] = self  # the route template for the latency metric
        return match, child_scope

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        await Route.handle(self, scope, receive, send)
