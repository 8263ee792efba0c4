"""The ingestion API, an OAuth 2.0 resource server (RFC 6750): counts in, lots and readings out.

    POST /v1/counts                       counts:write (a device; the device is the token's sub)
    GET  /v1/lots, /v1/lots/{lot}         counts:read
    GET  /v1/lots/{lot}/history           counts:read, ?from=&to=&step= (ingest/history.py)
    GET  /v1/devices/{id}/readings        counts:read, paginated by seq

Tokens are checked by the shared verifier (`auth.deps.require_token`) before the body is read.
Refusals: 401/403 from the verifier with `WWW-Authenticate`; a Content-Type other than JSON
415, a body over 64 KB 413 before it is read whole, non-JSON or a repeated key 400 and schema
errors 422, each a JSON `{"error", "error_description"}`.
Nothing is stored unless the whole request is valid, and a request is answered only after its
readings are committed (requests arriving together share one commit: commit.py).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Path, Query
from prometheus_client import Counter
from pydantic import AfterValidator
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from provisioning.common.rules import LOT_MAX, LOT_PATTERN, check_lot
from provisioning.common.scopes import COUNTS_READ, COUNTS_WRITE, DEVICE, INGEST_AUDIENCE
from provisioning.common.text import NO_NUL_PATTERN
from provisioning.service.auth.deps import require_token
from provisioning.service.auth.errors import (
    InvalidRequest,
    InvalidToken,
    OAuthError,
    TooManyRequests,
    UnsupportedMediaType,
)
from provisioning.service.auth.principal import Principal
from provisioning.service.auth.ratelimit import TokenBuckets
from provisioning.service.context import ServiceContext
from provisioning.service.ingest import store
from provisioning.service.ingest.commit import CountsCommit
from provisioning.service.ingest.live import LiveFeed
from provisioning.service.ingest.mqtt import OutboxPublisher, parse_mqtt_url
from provisioning.service.ingest.schemas import (
    COUNTS_BODY_SCHEMA,
    MAX_BODY_BYTES,
    MAX_SEQ,
    InvalidBody,
    MalformedBody,
    parse_counts,
)
from provisioning.service.lots import history
from provisioning.service.web.body import read_body
from provisioning.service.web.hot import RouteDoc, add_hot_route

Reader = Annotated[Principal, Depends(require_token(INGEST_AUDIENCE, COUNTS_READ))]
MAX_PAGE = 1000
# NUL is refused for every path and query (edge.py): the document says so.
TextPath = Annotated[str, Path(json_schema_extra={"pattern": NO_NUL_PATTERN})]


class AccessDenied(OAuthError):
    """A valid device token used for another device (RFC 6749 §4.1.2.1 `access_denied`)."""

    error = "access_denied"
    status_code = 403


def _invalid_body(error: InvalidBody) -> Response:
    where = ".".join(str(part) for part in error.loc[1:]) or "body"
    return JSONResponse(
        {
            "error": "invalid_request",
            "error_description": f"{where}: {error.msg}",
            "detail": error.detail(),
        },
        status_code=422,
    )


def install(app: FastAPI, ctx: ServiceContext) -> None:
    """Add the ingestion API, and with `mqtt_url` the outbox publisher, to `app`."""
    publisher: OutboxPublisher | None = None
    if ctx.settings.mqtt_url:
        # Without a broker no outbox rows are written at all, so the table cannot grow unread.
        # The URL was checked by the settings (config.py) already.
        target = parse_mqtt_url(ctx.settings.mqtt_url)
        publisher = OutboxPublisher(ctx.engine, target, registry=ctx.metrics.registry)
        ctx.on_startup.append(publisher.start)
        ctx.on_shutdown.append(publisher.stop)
    ctx.mqtt = publisher
    router = APIRouter(tags=["ingest"])
    engine = ctx.engine

    readings = Counter(
        "parkfleet_readings",
        "Readings posted to /v1/counts: accepted (stored) or duplicate (already stored).",
        ["result"],
        registry=ctx.metrics.registry,
    )
    accepted, duplicates = readings.labels("accepted"), readings.labels("duplicate")
    live = ctx.live = LiveFeed(engine)
    group = CountsCommit(engine, publisher is not None, publisher.wake if publisher else None)
    ctx.on_shutdown.append(group.close)

    check_writer = require_token(INGEST_AUDIENCE, COUNTS_WRITE)
    settings = ctx.settings
    # Readings per device and minute (config.py): one board token cannot fill the disk.
    burst = settings.ingest_readings_burst
    quota = TokenBuckets(burst, settings.ingest_readings_per_minute * 60.0)
    refused: dict[str, int] = {}  # posts refused per device since its last stored one
    refusals = Counter(
        "parkfleet_ingest_refused",
        "Posts to /v1/counts refused for the per-device readings rate (429).",
        registry=ctx.metrics.registry,
    )

    async def post_counts(request: Request) -> Response:
        """Store a device's readings once each; answer `{"accepted", "duplicates"}`."""
        device = await check_writer(request)
        if not _is_json(request.headers.get("content-type")):
            raise UnsupportedMediaType("Content-Type must be application/json")
        body = await read_body(
            request.headers.get("content-length"), request.stream(), MAX_BODY_BYTES
        )
        try:
            batch = parse_counts(body)
        except MalformedBody as error:
            raise InvalidRequest(str(error)) from None
        except InvalidBody as error:
            return _invalid_body(error)
        if device.kind != DEVICE or batch.device_id not in (None, device.client_id):
            raise AccessDenied("device_id is not the token's subject")
        wait = quota.take(device.client_id, cost=min(max(1, batch.received), burst))
        if wait:
            refused[device.client_id] = refused.get(device.client_id, 0) + 1
            refusals.inc()
            raise TooManyRequests(wait, "readings rate limit exceeded; retry later")
        if refused:
            count = refused.pop(device.client_id, 0)
            if count:
                batch = dataclasses.replace(batch, refused=count)
        try:
            result = await group.store(device.client_id, batch)  # wakes the publisher
        except store.UnknownDevice:
            raise InvalidToken("the token's device is not registered and enabled") from None
        if live is not None and result.accepted:
            live.touched(result.lot, device.client_id)  # committed: tell open dashboards
        accepted.inc(result.accepted)
        duplicates.inc(result.duplicates)
        answer = b'{"accepted":%d,"duplicates":%d' % (result.accepted, result.duplicates)
        if result.update:
            # The board learns of its update from the answer it gets anyway.
            answer += b',"update":{"version":"%s"}' % result.update.encode()
        return Response(answer + b"}", media_type="application/json")

    @router.get("/v1/lots")
    def get_lots(
        _reader: Reader,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
        cursor: Annotated[
            str | None,
            AfterValidator(lambda c: c if c is None else check_lot(c)),
            Query(max_length=LOT_MAX, json_schema_extra={"pattern": LOT_PATTERN}),
        ] = None,
    ) -> dict[str, Any]:
        """Lots with a registered device, a record or a recount, with their totals, by name,
        `limit` at a time; follow `next_cursor` (the last name of this page) for more."""
        with engine.connect() as conn:
            lots = store.list_lots(conn)
        if cursor is not None:
            lots = [lot for lot in lots if lot["lot"] > cursor]
        page = lots[:limit]
        more = page[-1]["lot"] if len(lots) > limit else None
        return {"lots": page, "next_cursor": more}

    @router.get("/v1/lots/{lot}", responses={404: {"description": "No device in this lot"}})
    def get_lot(lot: TextPath, _reader: Reader) -> Response:
        """A lot's total and each device's latest reading."""
        with engine.connect() as conn:
            detail = store.lot_detail(conn, lot)
        if detail is None:
            return _not_found("no device is registered in this lot and it has no record")
        return JSONResponse(detail)

    @router.get("/v1/lots/{lot}/history")
    def get_lot_history(
        lot: TextPath,
        _reader: Reader,
        from_: Annotated[str | None, Query(alias="from", max_length=40)] = None,
        to: Annotated[str | None, Query(max_length=40)] = None,
        step: Annotated[
            int | None, Query(ge=history.MIN_STEP, le=2**31, multiple_of=history.MIN_STEP)
        ] = None,
    ) -> Response:
        """Occupancy at each multiple of `step` seconds from `from` to `to` (epoch seconds or
        ISO 8601; default the last 24 h): the sum of each board's latest reading then."""
        try:
            end = history.parse_time(to, "to") if to else time.time()
            start = history.parse_time(from_, "from") if from_ else end - 86400
            every = step if step else history.default_step(end - start)
            with engine.connect() as conn:
                body = history.history_response(conn, lot, start, end, every)
        except history.BadRange as error:
            return JSONResponse(
                {"error": "invalid_request", "error_description": str(error)}, status_code=422
            )
        return JSONResponse(body)

    @router.get(
        "/v1/devices/{device_id}/readings", responses={404: {"description": "No such device"}}
    )
    def get_readings(
        device_id: TextPath,
        _reader: Reader,
        since_seq: Annotated[int | None, Query(ge=-1, le=MAX_SEQ)] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    ) -> Response:
        """A device's readings with seq > `since_seq`, in seq order; follow `next_since_seq`."""
        with engine.connect() as conn:
            page = store.device_readings(conn, device_id, since_seq, limit)
        if page is None:
            return _not_found("no such device")
        return JSONResponse(page)

    # Every board's posts land here: a hot endpoint (web/hot.py), in the OpenAPI document like
    # any API route, but its requests skip FastAPI's dependency solving and response handling,
    # a third of a one-reading post's cost (tools/bench/ingest.py).
    doc = RouteDoc(
        summary="Store a device's readings",
        tags=["ingest"],
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": COUNTS_BODY_SCHEMA}},
            }
        },
        responses={
            200: {"description": '`{"accepted": n, "duplicates": m}`'},
            400: {"description": "Not JSON, or a JSON object repeats a key"},
            401: {"description": "Missing, invalid or expired token (RFC 6750)"},
            403: {"description": "No counts:write scope, or device_id is not the token's sub"},
            413: {"description": f"Body over {MAX_BODY_BYTES} bytes"},
            415: {"description": "Content-Type is not application/json"},
            422: {"description": "JSON that breaks the schema; nothing was stored"},
            429: {
                "description": "The device's readings rate is spent (per device and minute);"
                " retry after `Retry-After` seconds, nothing was stored"
            },
        },
    )
    add_hot_route(app, "POST", "/v1/counts", post_counts, doc)
    app.include_router(router)


def _is_json(content_type: str | None) -> bool:
    """`application/json`, with no parameter but `charset=utf-8` (RFC 8259 §8.1: UTF-8)."""
    if content_type is None:
        return False
    media, _, params = content_type.partition(";")
    if media.strip().lower() != "application/json":
        return False
    params = params.strip().lower().replace(" ", "")
    return params in ("", "charset=utf-8", 'charset="utf-8"')


def _not_found(description: str) -> Response:
    return JSONResponse({"error": "not_found", "error_description": description}, status_code=404)
