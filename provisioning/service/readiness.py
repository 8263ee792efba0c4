"""`GET /readyz`: may a load balancer send this instance traffic, and what runs degraded?

`GET /healthz` says the process answers (liveness); `/readyz` also checks what a request needs:

- the database: `SELECT 1` within `DB_TIMEOUT_S`, else **503**
  `{"status": "unavailable", "unavailable": ["database"]}`. The check has its own thread and
  connection: an instance whose pool and worker threads are all taken by requests is busy, not
  unready, and must say so at once; were it marked down for being busy, a load balancer would
  move its load onto the others until every instance is down (measured in the soak: 500 boards
  booting at once took all three instances out of HAProxy for ~20 s);
- optional parts, which never make the instance unready: **200**
  `{"status": "ready", "degraded": [...]}`, where `"mqtt"` means the fan-out is behind or cut off
  from the broker (`OutboxPublisher.degraded`: the oldest outbox message is older than
  `mqtt.DEGRADED_AGE_S` or more than `mqtt.DEGRADED_DEPTH` wait, or this instance relays and is
  not connected). Counts are still accepted and stored; subscribers just hear of them late.
  `"issuer:URL"` means a trusted external issuer's keys could not be fetched lately
  (auth/issuers.py): its tokens are still checked with the keys fetched before, so its boards
  keep posting unless it rotated to a key we have not seen.
"""

from __future__ import annotations

import asyncio
import contextlib
from concurrent.futures import ThreadPoolExecutor

from fastapi import APIRouter, FastAPI
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from provisioning.service.context import ServiceContext
from provisioning.store import sql
from provisioning.store.db import DATABASE_ERRORS

DB_TIMEOUT_S = 2.0
_NO_STORE = {"Cache-Control": "no-store"}
_RETRY = {**_NO_STORE, "Retry-After": "5"}
# The database refused, or did not answer within DB_TIMEOUT_S.
_UNREADY: tuple[type[Exception], ...] = (*DATABASE_ERRORS, TimeoutError)


class _Probe:
    """Readiness checks, one at a time on one thread that keeps one database connection (a
    read-only `sql.HeldConnection`: one round trip a statement on PostgreSQL, and a connection
    the database closed is replaced at once)."""

    def __init__(self, ctx: ServiceContext) -> None:
        self._ctx = ctx
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="readiness")
        self._held = sql.HeldConnection(ctx.engine, read_only=True)

    async def check(self) -> list[str]:
        """The degraded optional parts; raises if the database does not answer in time."""
        loop = asyncio.get_running_loop()
        return await asyncio.wait_for(
            loop.run_in_executor(self._thread, self._held.run, self._degraded), DB_TIMEOUT_S
        )

    def _degraded(self, tx: sql.Tx) -> list[str]:
        sql.ping(tx)
        mqtt = self._ctx.mqtt
        return ["mqtt"] if mqtt is not None and mqtt.degraded(tx) else []

    def warm(self) -> None:
        """Open the connection at startup, before requests can take the whole pool (a database
        that is down then is retried by the first check)."""

        def connect() -> None:
            with contextlib.suppress(*DATABASE_ERRORS):
                self._held.run(sql.ping)

        self._thread.submit(connect)

    def close(self) -> None:
        """Stop the thread and give the connection back (shutdown)."""
        self._thread.shutdown(wait=True)
        self._held.close()


def _issuers_degraded(ctx: ServiceContext) -> list[str]:
    external = ctx.verifier.external
    return [] if external is None else [f"issuer:{url}" for url in external.issuers.degraded()]


def install(app: FastAPI, ctx: ServiceContext) -> None:
    """Add `GET /readyz` to `app`."""
    probe = _Probe(ctx)
    ctx.on_startup.append(probe.warm)
    ctx.on_shutdown.append(probe.close)

    async def readyz(_request: Request) -> Response:
        """200 with the degraded optional parts, or 503 while the database is unreachable."""
        try:
            degraded = await probe.check() + _issuers_degraded(ctx)
        except _UNREADY:
            return JSONResponse(
                {"status": "unavailable", "unavailable": ["database"]},
                status_code=503,
                headers=_RETRY,
            )
        return JSONResponse({"status": "ready", "degraded": degraded}, headers=_NO_STORE)

    router = APIRouter(include_in_schema=False)
    router.add_api_route("/readyz", readyz, methods=["GET"])
    app.include_router(router)
