"""The ASGI application: authorization server, registry/admin API and ingestion API in one app."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from provisioning.service import readiness
from provisioning.service.auth import routes as auth_routes
from provisioning.service.auth.keys import KeyStore
from provisioning.service.auth.listen import ChangeListener, libpq_dsn
from provisioning.service.auth.secrets import SecretHasher
from provisioning.service.auth.verify import TokenVerifier
from provisioning.service.config import Settings
from provisioning.service.context import ServiceContext
from provisioning.service.ingest import routes as ingest_routes
from provisioning.service.lots import routes as lots_api
from provisioning.service.metrics import Metrics
from provisioning.service.registry import routes as registry_routes
from provisioning.service.ui import routes as ui_routes
from provisioning.service.web import edge, hot
from provisioning.store.db import make_engine, migrate, session_factory

log = logging.getLogger(__name__)


def build_context(settings: Settings) -> ServiceContext:
    """Migrate the database and open it; nothing here talks to the network."""
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    mode = settings.data_dir.stat().st_mode
    if mode & 0o077:
        # Keys and the database live here: say so, but do not change a directory we did not
        # make (it may be shared on purpose); the files in it are owner-only regardless.
        log.warning(
            "data directory %s is readable by others (mode %o): chmod 700 it",
            settings.data_dir,
            mode & 0o777,
        )
    migrate(settings.db_url)
    engine = make_engine(settings.db_url, settings.sqlite_synchronous)
    sessions = session_factory(engine)
    metrics = Metrics()
    keys = KeyStore.from_settings(settings, sessions)
    ctx = ServiceContext(
        settings=settings,
        engine=engine,
        sessions=sessions,
        hasher=SecretHasher.from_data_dir(settings.data_dir),
        metrics=metrics,
        keys=keys,
        verifier=TokenVerifier.from_settings(settings, engine, sessions, keys, metrics),
    )
    external = ctx.verifier.external
    if external is not None:
        # Trusted issuers' keys fetched in the background from the start (auth/issuers.py).
        ctx.on_startup.append(external.issuers.start)
        ctx.on_shutdown.append(external.issuers.stop)
    if engine.dialect.name == "postgresql":
        # Other instances' revocations and key changes, as they commit (auth/listen.py).
        listener = ChangeListener(
            libpq_dsn(engine), ctx.verifier.clients, None if settings.jwks_url else keys
        )
        ctx.listener = listener
        ctx.on_startup.append(listener.start)
        ctx.on_shutdown.append(listener.stop)
    return ctx


def create_app(settings: Settings) -> FastAPI:
    """Build the whole service for `settings` (called by `parkctl serve` and by tests)."""
    ctx = build_context(settings)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        for start in ctx.on_startup:
            start()
        try:
            yield
        finally:
            for stop in reversed(ctx.on_shutdown):
                stop()
            ctx.engine.dispose()

    docs = settings.api_docs  # opt-in: the API's map is not for every caller (docs/service.md)
    app = FastAPI(
        title="parkfleet",
        version="0.1.0",
        lifespan=lifespan,
        openapi_url="/openapi.json" if docs else None,
        docs_url="/docs" if docs else None,
        redoc_url=None,
        # Any operation: NUL in the path or query, or a body that does not parse (edge.py).
        responses={400: {"description": "invalid_request: malformed request"}},
    )
    app.state.ctx = ctx
    hot.install(app)  # first: the innermost middleware (web/__init__.py: adding an endpoint)

    async def healthz() -> dict[str, str]:
        # Constant JSON: also the framework ceiling that `make bench` compares endpoints with,
        # so it is the one route on the app's own router (no included router to pass).
        return {"status": "ok"}

    app.router.add_api_route("/healthz", healthz, methods=["GET"], include_in_schema=False)
    readiness.install(app, ctx)  # GET /readyz: database reachable, which parts are degraded

    # Routes are matched in order (hot endpoints are served ahead of them all: web/hot.py).
    ingest_routes.install(app, ctx)
    auth_routes.install(app, ctx)
    registry_routes.install(app, ctx)
    lots_api.install(app, ctx)
    from provisioning.service.releases import routes as release_routes

    release_routes.install(app, ctx)
    ui_routes.install(app, ctx)  # the dashboard, last: every API route is matched first
    edge.install(app)  # added last: outermost of the app's middleware
    return app
