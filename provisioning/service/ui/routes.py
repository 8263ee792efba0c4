"""The dashboard at /ui/: pages, sign-in and out, board actions, the live event stream.

Pages are rendered on the server (Jinja2 with autoescaping: every board and operator value is
text, never markup) and work without JavaScript; static/app.js only adds live updates, relative
times and the copy button. Every response carries the security headers of headers.py (a
Content-Security-Policy without inline script, among others).

Reads use the session's `counts:read` token (verified on every request, so a disabled operator
is out within the verifier's status bound). Actions go to the admin API in process with the
session's admin token, so they get exactly the admin API's checks and audit trail; a viewer's
session has no admin token and every action is refused with 403 before anything is sent.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from fastapi import APIRouter, FastAPI
from jinja2 import Environment, FileSystemLoader, select_autoescape
from prometheus_client import Gauge
from sqlalchemy import Connection
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from starlette.staticfiles import StaticFiles

from provisioning.common import display
from provisioning.common.scopes import INGEST_AUDIENCE
from provisioning.service.auth.errors import InvalidToken, OAuthError
from provisioning.service.auth.secrets import same_text
from provisioning.service.auth.tokens import parse_params
from provisioning.service.context import ServiceContext
from provisioning.service.ingest import store
from provisioning.service.ingest.live import LiveFeed
from provisioning.service.ui import chart, health, views
from provisioning.service.ui.headers import SecurityHeaders
from provisioning.service.ui.offloop import PageWork, tune_interpreter
from provisioning.service.ui.session import Session, SessionStore
from provisioning.service.ui.signin import SignInLimit, SignInRefused
from provisioning.service.web.body import read_body

HERE = Path(__file__).parent
ACTIONS = {"disable": "Disable", "enable": "Enable", "rotate-secret": "Rotate the secret of"}
KEEPALIVE_S = 5.0
MAX_FORM = 4096


class Dashboard:
    """The /ui routes and their shared state."""

    def __init__(self, app: FastAPI, ctx: ServiceContext) -> None:
        self.app = app
        self.ctx = ctx
        self.sessions = SessionStore(ctx.engine)
        self.signins = SignInLimit(ctx.settings)
        assert ctx.live is not None, "the ingestion API is installed first"
        self.live: LiveFeed = ctx.live
        # The service's own token endpoint and admin API, called in process.
        self.internal = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://parkfleet.internal"
        )
        self.templates = Environment(
            loader=FileSystemLoader(HERE / "templates"),
            autoescape=select_autoescape(default=True, default_for_string=True),
        )
        self.templates.filters.update(
            utc=display.utc, until=display.until, duration=display.duration, kb=display.kb
        )
        self.templates.globals["health_rows"] = display.health_rows
        self.work = PageWork(ctx.engine, ctx.settings.token_ttl)

    # --- helpers ---

    def secure(self, request: Request) -> bool:
        """Cookies are Secure and `__Host-` when this request came over HTTPS (TLS here, or a
        trusted proxy's X-Forwarded-Proto: uvicorn sets the scheme from it for those only) or
        the public URL is HTTPS (`--issuer https://...`, or TLS here)."""
        return request.url.scheme == "https" or self.ctx.settings.public_https

    def cookie(self, request: Request) -> str:
        # RFC 6265bis §4.1.3.2: a `__Host-` cookie is Secure, host-only, Path=/.
        return "__Host-parkfleet" if self.secure(request) else "parkfleet_session"

    def login_cookie(self, request: Request) -> str:
        return "__Host-parkfleet-login" if self.secure(request) else "parkfleet_login"

    async def page(
        self, request: Request, name: str, http_status: int = 200, **values: Any
    ) -> Response:
        """Render a template off the event loop (offloop.py)."""
        template = self.templates.get_template(name)
        values.update(request=request, now=time.time())
        html = await self.work.render(template, values)
        return HTMLResponse(html, status_code=http_status)

    async def error(
        self, request: Request, session: Session | None, status: int, message: str
    ) -> Response:
        return await self.page(request, "error.html", status, session=session, message=message)

    async def session(self, request: Request) -> Session | None:
        """The signed-in session, its read token still good; else None (and it is ended)."""
        cookie = request.cookies.get(self.cookie(request))
        session = self.sessions.get(cookie)
        if session is None:
            return None
        try:
            await self.ctx.verifier.verify(session.read_token, INGEST_AUDIENCE)
        except InvalidToken:  # the operator was disabled or deleted, or keys changed
            self.sessions.end(cookie)
            return None
        return session

    def to_login(self, request: Request) -> Response:
        target = request.url.path
        if request.url.query:
            target += "?" + request.url.query
        return RedirectResponse(f"/ui/login?next={quote(target, safe='')}", status_code=303)

    async def form(self, request: Request) -> dict[str, str] | None:
        """A urlencoded form body, parsed strictly; None if it is not one."""
        try:
            body = await read_body(
                request.headers.get("content-length"), request.stream(), MAX_FORM
            )
            return parse_params(request.headers.get("content-type"), body)
        except OAuthError:
            return None

    def same_origin(self, request: Request) -> bool:
        """Origin, when the browser sends it, names this host (a second guard beside CSRF
        tokens and SameSite=Strict: OWASP CSRF cheat sheet, "verifying origin")."""
        origin = request.headers.get("origin")
        if origin is None:
            return True
        host = request.headers.get("host", "")
        return origin in (f"http://{host}", f"https://{host}")

    # --- sign-in ---

    async def login_form(self, request: Request) -> Response:
        token = secrets.token_urlsafe(32)
        response = await self.page(
            request, "login.html", login_csrf=token, next=_safe_next(request)
        )
        self._set_login_cookie(request, response, token)
        return response

    def _set_login_cookie(self, request: Request, response: Response, token: str) -> None:
        response.set_cookie(
            self.login_cookie(request), token, max_age=3600, path="/",
            secure=self.secure(request), httponly=True, samesite="strict",
        )  # fmt: skip

    async def login(self, request: Request) -> Response:
        form = await self.form(request)
        expected = request.cookies.get(self.login_cookie(request))
        presented = (form or {}).get("csrf")
        if (
            form is None
            or not expected
            or not presented
            or not same_text(presented, expected)
            or not self.same_origin(request)
        ):
            return await self.error(request, None, 403, "The sign-in form expired. Load it again.")
        # Failed sign-ins per browser address (signin.py): a guesser is throttled before any
        # work, while an office behind one address can sign in all day.
        address = request.client.host if request.client else "unknown"
        refused: SignInRefused | None = None
        try:
            session = await self.signins.sign_in(
                self.app, address, form.get("client_id", ""), form.get("client_secret", "")
            )
        except SignInRefused as error:
            refused = error
        if refused is not None:
            token = secrets.token_urlsafe(32)
            response = await self.page(
                request, "login.html", refused.status, login_csrf=token,
                next=form.get("next", "/ui/"), message=refused.message,
                client_id=form.get("client_id", ""),
            )  # fmt: skip
            if refused.retry_after:
                response.headers["Retry-After"] = str(refused.retry_after)
            self._set_login_cookie(request, response, token)
            return response
        cookie = self.sessions.create(session)
        target = form.get("next", "/ui/")
        response = RedirectResponse(target if _local(target) else "/ui/", status_code=303)
        secure = self.secure(request)
        response.set_cookie(
            self.cookie(request), cookie, max_age=max(int(session.expires_at - time.time()), 1),
            path="/", secure=secure, httponly=True, samesite="strict",
        )  # fmt: skip
        response.delete_cookie(
            self.login_cookie(request), path="/", secure=secure, samesite="strict"
        )
        return response

    async def logout(self, request: Request) -> Response:
        session = await self.session(request)
        form = await self.form(request)
        if session is not None:
            if form is None or not session.csrf_ok(form.get("csrf")):
                return await self.error(request, session, 403, "Missing or wrong CSRF token.")
            self.sessions.end(request.cookies.get(self.cookie(request)))
        response = RedirectResponse("/ui/login", status_code=303)
        response.delete_cookie(
            self.cookie(request), path="/", secure=self.secure(request), samesite="strict"
        )
        return response

    # --- pages ---

    async def overview(self, request: Request) -> Response:
        session = await self.session(request)
        if session is None:
            return self.to_login(request)
        params, ttl = request.query_params, self.ctx.settings.token_ttl
        lots = await self.work.read(lambda conn: views.overview(conn, ttl, params))
        for lot in lots.items:
            lot["spark_path"] = chart.sparkline(lot["spark"], lot.get("capacity"))
        return await self.page(request, "overview.html", session=session, lots=lots)

    async def lot(self, request: Request) -> Response:
        session = await self.session(request)
        if session is None:
            return self.to_login(request)
        name = request.path_params["lot"]
        chosen = request.query_params.get("range", "auto")
        ttl, params = self.ctx.settings.token_ttl, request.query_params

        def lot_page(conn: Connection) -> Any:
            totals = next((lot for lot in store.list_lots(conn) if lot["lot"] == name), None)
            if totals is None:
                return None
            auto = views.auto_range(conn, name, time.time())
            span = chosen if chosen in views.RANGES else auto
            span_s, step = views.RANGES[span]
            current = totals["cars"] if totals["devices"] else None
            times, values = views.series(conn, name, span_s, step, current)
            every = views.boards(conn, ttl, lot=name, expiry=False)
            boards = views.paged(every, params)
            views.add_token_expiry(conn, boards.items, ttl)
            totals["updated_at"] = views.last_updates(conn).get(name)
            stale = [b for b in every if b.stale]
            return totals, times, values, boards, auto, span, span_s, stale

        found = await self.work.read(lot_page)
        if found is None:
            return await self.error(request, session, 404, "No such lot.")
        totals, times, values, boards, auto, span, span_s, stale = found
        drawn = chart.chart(times, values, totals.get("capacity"), span_s)
        return await self.page(
            request, "lot.html", session=session, lot=totals, chart=drawn, span=span,
            ranges=list(views.RANGES), boards=boards.items, pager=boards, auto=auto,
            chosen=chosen, stale=stale,
        )  # fmt: skip

    async def boards(self, request: Request) -> Response:
        session = await self.session(request)
        if session is None:
            return self.to_login(request)
        params = request.query_params
        query = params.get("q", "").strip().lower()[:100]
        status = params.get("status", "all")
        sort = params.get("sort", "status")
        descending = params.get("dir", "asc") == "desc"
        ttl = self.ctx.settings.token_ttl
        boards = list(await self.work.fleet())
        if query:
            boards = [
                b for b in boards
                if query in b.name.lower() or query in b.lot.lower() or query in b.client_id.lower()
            ]  # fmt: skip
        if status == "offline":
            boards = [b for b in boards if not b.online]
        elif status == "unwell":
            boards = [b for b in boards if b.problems or not b.online]
        elif status == "online":
            boards = [b for b in boards if b.online]
        boards.sort(key=lambda b: b.sort_key(sort), reverse=descending)
        pager = views.paged(boards, params)
        await self.work.read(lambda conn: views.add_token_expiry(conn, pager.items, ttl))
        return await self.page(
            request, "boards.html", session=session, boards=pager.items, pager=pager, q=query,
            status=status, sort=sort, descending=descending,
        )  # fmt: skip

    async def board(self, request: Request) -> Response:
        session = await self.session(request)
        if session is None:
            return self.to_login(request)
        client_id = request.path_params["client_id"]
        ttl, admin = self.ctx.settings.token_ttl, session.admin

        def board_page(conn: Connection) -> tuple[list[views.Board], list[Any], list[Any]]:
            found = views.boards(conn, ttl, client_id=client_id)
            if not found:
                return found, [], []
            readings = views.recent_readings(conn, client_id)
            return found, readings, views.audit_entries(conn, client_id) if admin else []

        found, readings, audit = await self.work.read(board_page)
        if not found:
            return await self.error(request, session, 404, "No such board.")
        with self.ctx.sessions() as db:
            reported = health.board(db, client_id)
        return await self.page(
            request, "board.html", session=session, board=found[0], readings=readings,
            audit=audit, actions=ACTIONS, done=request.query_params.get("done"), **reported,
        )  # fmt: skip

    async def releases(self, request: Request) -> Response:
        session = await self.session(request)
        if session is None:
            return self.to_login(request)
        span = request.query_params.get("range", "24h")
        if span not in health.RANGES:
            span = "24h"
        with self.ctx.sessions() as db:
            report = health.releases(db, span)
        return await self.page(
            request, "releases.html", session=session, report=report, span=span,
            ranges=list(health.RANGES),
        )  # fmt: skip

    async def confirm(self, request: Request) -> Response:
        session = await self.session(request)
        if session is None:
            return self.to_login(request)
        client_id, action = request.path_params["client_id"], request.path_params["action"]
        if action not in ACTIONS:
            return await self.error(request, session, 404, "No such action.")
        if not session.admin:
            return await self.error(request, session, 403, "Viewers cannot change boards.")
        ttl = self.ctx.settings.token_ttl
        found = await self.work.read(lambda conn: views.boards(conn, ttl, client_id=client_id))
        if not found:
            return await self.error(request, session, 404, "No such board.")
        return await self.page(
            request, "confirm.html", session=session, board=found[0], action=action,
            verb=ACTIONS[action],
        )  # fmt: skip

    async def act(self, request: Request) -> Response:
        session = await self.session(request)
        if session is None:
            return await self.error(request, None, 401, "Sign in first.")
        client_id, action = request.path_params["client_id"], request.path_params["action"]
        form = await self.form(request)
        if form is None or not session.csrf_ok(form.get("csrf")) or not self.same_origin(request):
            return await self.error(request, session, 403, "Missing or wrong CSRF token.")
        if session.admin_token is None:
            return await self.error(request, session, 403, "Viewers cannot change boards.")
        if action not in ACTIONS:
            return await self.error(request, session, 404, "No such action.")
        response = await self.internal.post(
            f"/admin/devices/{quote(client_id, safe='')}/{action}",
            json={} if action == "rotate-secret" else None,
            headers={"Authorization": f"Bearer {session.admin_token}"},
        )
        if response.status_code != 200:
            body = response.json() if response.content else {}
            message = str(
                body.get("error_description") or f"The admin API answered {response.status_code}."
            )
            return await self.error(request, session, response.status_code, message)
        self.work.changed()  # the next boards page shows the change
        if action == "rotate-secret":
            # Post/redirect/get: a reload of the result must not rotate again. The secret
            # waits in the server-side session for the one GET that shows it.
            rotated = response.json()
            self.sessions.keep_secret(
                session, client_id, rotated["client_secret"],
                rotated.get("previous_secret_expires_at"),
            )  # fmt: skip
            return RedirectResponse(
                f"/ui/boards/{quote(client_id, safe='')}/new-secret", status_code=303
            )
        return RedirectResponse(
            f"/ui/boards/{quote(client_id, safe='')}?done={action}", status_code=303
        )

    async def new_secret(self, request: Request) -> Response:
        """The rotated secret, once: a second look (or a reload) finds it gone."""
        session = await self.session(request)
        if session is None:
            return self.to_login(request)
        client_id = request.path_params["client_id"]
        waiting = self.sessions.take_secret(session)
        if waiting is None or waiting[0] != client_id:
            return await self.error(request, session, 410, "The new secret was shown once already.")
        return await self.page(
            request, "secret.html", session=session, client_id=client_id, secret=waiting[1],
            previous_until=waiting[2],
        )  # fmt: skip

    async def events(self, request: Request) -> Response:
        """Server-Sent Events: a `lot` event with whole totals whenever a lot's counts change."""
        session = await self.session(request)
        if session is None:
            return Response("sign in first\n", status_code=401, media_type="text/plain")
        queue = self.live.subscribe()
        first = self.live.snapshot()

        async def stream() -> AsyncIterator[bytes]:
            try:
                yield b"retry: 2000\n\n"
                for frame in first:
                    yield frame
                checked = time.monotonic()
                while not session.ended and time.time() < session.expires_at:
                    try:
                        yield await asyncio.wait_for(queue.get(), KEEPALIVE_S)
                    except TimeoutError:
                        yield b": keep-alive\n\n"
                    if time.monotonic() - checked >= KEEPALIVE_S:
                        # Is the operator still allowed? Disabled or deleted, the stream ends
                        # within the verifier's status bound, like the pages.
                        checked = time.monotonic()
                        if not self.sessions.alive(session):  # logged out on any instance
                            return
                        try:
                            await self.ctx.verifier.verify(session.read_token, INGEST_AUDIENCE)
                        except InvalidToken:
                            return
            finally:
                self.live.unsubscribe(queue)

        return StreamingResponse(
            stream(), media_type="text/event-stream", headers={"X-Accel-Buffering": "no"}
        )


def _local(target: str) -> bool:
    """Only paths on this dashboard are followed after sign-in (no open redirect)."""
    return target.startswith("/ui/") and not target.startswith("//") and "\\" not in target


def _safe_next(request: Request) -> str:
    target = request.query_params.get("next", "/ui/")
    return target if _local(target) else "/ui/"


def install(app: FastAPI, ctx: ServiceContext) -> None:
    """Serve the dashboard under /ui (after the APIs: their routes are matched first)."""
    tune_interpreter()
    ui = Dashboard(app, ctx)
    streams = Gauge(
        "parkfleet_dashboard_streams",
        "Open dashboard event streams (GET /ui/events).",
        registry=ctx.metrics.registry,
    )
    streams.set_function(lambda: ui.live.subscribers)

    # The pages take the `Request` and return a `Response` themselves (server-rendered HTML);
    # API routes all the same, so each has its template in the latency metric.
    router = APIRouter(include_in_schema=False)

    async def to_overview() -> Response:
        return RedirectResponse("/ui/", status_code=307)

    # Path -> method -> handler (as OpenAPI's paths object), matched in this order.
    pages: dict[str, dict[str, Callable[..., Awaitable[Response]]]] = {
        "/ui": {"GET": to_overview},
        "/ui/": {"GET": ui.overview},
        "/ui/login": {"GET": ui.login_form, "POST": ui.login},
        "/ui/logout": {"POST": ui.logout},
        "/ui/lots/{lot}": {"GET": ui.lot},
        "/ui/boards": {"GET": ui.boards},
        "/ui/releases": {"GET": ui.releases},
        "/ui/boards/{client_id}": {"GET": ui.board},
        # Before `{action}`, which would take `new-secret` for an action.
        "/ui/boards/{client_id}/new-secret": {"GET": ui.new_secret},
        "/ui/boards/{client_id}/{action}": {"GET": ui.confirm, "POST": ui.act},
        "/ui/events": {"GET": ui.events},
    }
    for path, operations in pages.items():
        for method, endpoint in operations.items():
            router.add_api_route(path, endpoint, methods=[method])
    router.mount("/ui/static", StaticFiles(directory=HERE / "static"), name="static")
    app.include_router(router)
    app.add_middleware(SecurityHeaders)
