"""The dashboard's security headers on every response under /ui/: a Content-Security-Policy
without inline script, `frame-ancestors 'none'` and `Referrer-Policy: same-origin` (`nosniff`
and HSTS come from edge.py, as for every response)."""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


class SecurityHeaders:
    """Adds the dashboard's security headers to every response under /ui/ (pure ASGI
    middleware, so the event stream is not buffered)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith("/ui/"):
            await self.app(scope, receive, send)
            return
        static = path.startswith("/ui/static/")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers["Content-Security-Policy"] = CSP
                # Nothing leaves for other sites; `same-origin` rather than `no-referrer` because
                # under `no-referrer` browsers send `Origin: null` on our own form posts (Fetch
                # standard, "serializing a request origin") and the Origin check needs it.
                headers["Referrer-Policy"] = "same-origin"
                headers["X-Frame-Options"] = "DENY"
                headers["Cross-Origin-Opener-Policy"] = "same-origin"
                if not static:
                    headers["Cache-Control"] = "no-store"
            await send(message)

        await self.app(scope, receive, send_with_headers)
