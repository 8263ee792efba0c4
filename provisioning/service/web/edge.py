"""What every HTTP request passes before and after routing, whatever the route.

- Path and query are refused (400) if they carry NUL (`/admin/devices/a%00b`): PostgreSQL
  cannot store or compare it, so refusing it here keeps every route's parameters clean at once.
- Every response says `X-Content-Type-Options: nosniff`, and over TLS `Strict-Transport-Security`
  (RFC 6797): once a browser has seen the HTTPS service it never tries plain HTTP.
- Every refusal, including the framework's own (404, 405, a body that is not JSON, a query
  parameter of the wrong type), is the standard `{"error", "error_description"}` body.
- A client that goes away mid-request is one log line, never a traceback.
- While the database is unavailable (stopped, restarting, out of connections) every request that
  needs it is answered 503 `temporarily_unavailable` with `Retry-After`, never a 500: one handler
  here for every route. Broken pooled connections are dropped as they are found (the pool's
  pre-ping, `sql.FastQuery`'s retry), so the first request after the database is back succeeds.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from provisioning.common.errors import first_line
from provisioning.service.auth.errors import (
    NO_STORE,
    InvalidRequest,
    TemporarilyUnavailable,
    oauth_error_response,
)
from provisioning.service.web.transport import TIMED_OUT
from provisioning.store.db import DATABASE_ERRORS, unavailable

log = logging.getLogger(__name__)

_NOSNIFF = (b"x-content-type-options", b"nosniff")
_HSTS = (b"strict-transport-security", b"max-age=31536000")
_ERROR_CODES = {404: "not_found", 405: "method_not_allowed", 409: "conflict"}


class EdgeMiddleware:
    """Pure ASGI (no task per request): refuses NUL in path or query, adds security headers."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        query: bytes = scope["query_string"]
        if "\x00" in scope["path"] or b"\x00" in query or b"%00" in query:
            response = oauth_error_response(InvalidRequest("NUL in the path or query"))
            await response(scope, receive, _secured(scope, send))
            return
        await self.app(scope, receive, _secured(scope, send))


def _secured(scope: Scope, send: Send) -> Send:
    headers = [_NOSNIFF, _HSTS] if scope.get("scheme") == "https" else [_NOSNIFF]

    async def send_secured(message: Message) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = [*message.get("headers", ()), *headers]
        await send(message)

    return send_secured


def describe(errors: list[dict[str, Any]]) -> str:
    """FastAPI's validation errors as one line: `lot: lot must be 1 to 64 characters`."""
    parts = []
    for item in errors:
        loc = [str(p) for p in item["loc"]]
        where = ".".join(loc[1:] if loc[:1] == ["body"] else loc) or "body"
        parts.append(f"{where}: {str(item['msg']).removeprefix('Value error, ')}")
    return "; ".join(parts)


def validation_error(exc: RequestValidationError) -> JSONResponse:
    """422 `invalid_request` naming each broken field (and FastAPI's `detail` list)."""
    # Never echo the input: it may not even be encodable (a lone surrogate), or be a secret.
    errors = [
        {"loc": list(item["loc"]), "msg": str(item["msg"]), "type": str(item["type"])}
        for item in exc.errors()
    ]
    body = {"error": "invalid_request", "error_description": describe(errors), "detail": errors}
    return JSONResponse(body, status_code=422)


async def _validation_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    return validation_error(exc)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    status = exc.status_code
    body = {
        "error": _ERROR_CODES.get(status, "invalid_request"),
        "error_description": str(exc.detail),
    }
    headers = {**NO_STORE, **(exc.headers or {})}
    if status == 405:
        headers["Allow"] = _allowed(request)
    return JSONResponse(body, status_code=status, headers=headers)


def _allowed(request: Request) -> str:
    """Every method any route of this path takes (RFC 9110 §15.5.6): Starlette names only the
    first route that matched the path, but a path may have several (GET and DELETE)."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        match, _child = route.matches({**request.scope, "method": "OPTIONS"})
        if match != Match.NONE:
            methods.update(getattr(route, "methods", None) or ())
    return ", ".join(sorted(methods))


async def _client_gone(request: Request, _exc: Exception) -> Response:
    # Nobody is left to answer: one line, no traceback (a slow or vanished client is routine).
    # A request cut off by a deadline was logged by the transport already.
    if request.scope.get("state", {}).get(TIMED_OUT):
        return Response(status_code=408)
    client = request.client
    log.info(
        "client %s disconnected during %s %s",
        client.host if client else "?",
        request.method,
        request.scope.get("route", request.url).path,
    )
    return Response(status_code=400)


_UNAVAILABLE_LOG_EVERY_S = 10.0
_last_unavailable_log = [0.0]


async def _database_error(request: Request, exc: Exception) -> Response:
    if not unavailable(exc):
        raise exc  # a fault in our SQL: the server error (500) it is, with its traceback
    # Every request fails alike during an outage: one line per interval, not one per request.
    now = time.monotonic()
    if now - _last_unavailable_log[0] >= _UNAVAILABLE_LOG_EVERY_S:
        _last_unavailable_log[0] = now
        log.warning(
            "database unavailable (%s %s answered 503): %s",
            request.method,
            request.url.path,
            first_line(exc),
        )
    return oauth_error_response(TemporarilyUnavailable("the database is unavailable; retry later"))


def install(app: FastAPI) -> None:
    """Add the middleware and the error handlers to `app` (outermost of the app's own)."""
    app.add_middleware(EdgeMiddleware)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(ClientDisconnect, _client_gone)
    for error in DATABASE_ERRORS:
        app.add_exception_handler(error, _database_error)
