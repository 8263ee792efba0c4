"""`GET /readyz`: may a load balancer send this instance traffic, and what runs degraded?

`GET /healthz` says the process answers (liveness); `/readyz` also checks what a request needs:

- the database: `SELECT 1` within `DB_TIMEOUT_S`, else **503**
  `{"status": "unavailable", "unavailable": ["database"]}`;
- optional parts, which never make the instance unready: **200**
  `{"status": "ready", "degraded": [...]}`, where `"mqtt"` means the fan-out is behind or cut off
  from the broker (`OutboxPublisher.degraded`: the oldest outbox message is older than
  `mqtt.DEGRADED_AGE_S` or more than `mqtt.DEGRADED_DEPTH` wait, or this instance relays and is
  not connected). Counts are still accepted and stored; subscribers just hear of them late.
"""

from __future__ import annotations

import asyncio

from fastapi import FastAPI
from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from provisioning.context import ServiceContext

DB_TIMEOUT_S = 2.0
_NO_STORE = {"Cache-Control": "no-store"}
_RETRY = {**_NO_STORE, "Retry-After": "5"}


def _ping(engine: Engine) -> None:
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))


def _degraded(ctx: ServiceContext) -> list[str]:
    return ["mqtt"] if ctx.mqtt is not None and ctx.mqtt.degraded() else []


async def readyz(request: Request) -> Response:
    """200 with the degraded optional parts, or 503 while the database is unreachable."""
    ctx: ServiceContext = request.app.state.ctx
    try:
        await asyncio.wait_for(run_in_threadpool(_ping, ctx.engine), DB_TIMEOUT_S)
        degraded = await asyncio.wait_for(run_in_threadpool(_degraded, ctx), DB_TIMEOUT_S)
    except (SQLAlchemyError, TimeoutError):
        return JSONResponse(
            {"status": "unavailable", "unavailable": ["database"]},
            status_code=503,
            headers=_RETRY,
        )
    return JSONResponse({"status": "ready", "degraded": degraded}, headers=_NO_STORE)


def install(app: FastAPI) -> None:
    """Add `GET /readyz` to `app`."""
    app.add_api_route("/readyz", readyz, methods=["GET"], include_in_schema=False)
