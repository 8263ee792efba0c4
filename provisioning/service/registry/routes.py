"""The admin API: `/admin/devices`, `/admin/operators` and `/admin/audit`, for operator tokens.

Every route needs a Bearer token for `parkfleet-admin` with scope `devices:admin`, checked by the
shared verifier (401/403 per RFC 6750 §3.1). Errors are JSON `{"error", "error_description"}`
like the token endpoint's (RFC 6749 §5.2), including malformed bodies (422), unknown devices
(404) and a MAC registered twice (409, naming the device that has it). Responses that carry a
client secret are `Cache-Control: no-store` (as RFC 6749 §5.1 asks of token responses).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import SecretStr
from sqlalchemy.orm import Session
from starlette.types import Message

from provisioning.common.admin_schemas import (
    ApiError,
    AuditEntry,
    AuditPage,
    Device,
    DeviceCreate,
    DeviceCreated,
    DevicePage,
    DeviceUpdate,
    GateCounters,
    OperatorCreate,
    OperatorCreated,
    OperatorList,
    Reading,
    RotateSecret,
    SecretRotated,
    ServiceConfig,
)
from provisioning.common.admin_schemas import Operator as OperatorView
from provisioning.common.rules import LOT_MAX, LOT_PATTERN, MAC_PATTERN
from provisioning.common.scopes import ADMIN_AUDIENCE, DEVICE, DEVICES_ADMIN, OPERATOR
from provisioning.common.text import NO_NUL_PATTERN
from provisioning.service.auth.deps import require_token
from provisioning.service.auth.errors import NO_STORE, InvalidRequest
from provisioning.service.auth.principal import Principal
from provisioning.service.context import ServiceContext
from provisioning.service.registry import external, service
from provisioning.service.registry.service import DeviceRow, MacConflict, RegistryError
from provisioning.service.web.body import MalformedJson, UncleanText, read_body, strict_json
from provisioning.service.web.edge import validation_error
from provisioning.store.models import Client

_check_operator = require_token(ADMIN_AUDIENCE, DEVICES_ADMIN)
# NUL is refused for every path and query (edge.py): the document says so.
ClientIdPath = Annotated[str, Path(json_schema_extra={"pattern": NO_NUL_PATTERN})]
Operator = Annotated[Principal, Depends(_check_operator)]


def open_session(request: Request) -> Iterator[Session]:
    """One session per request (routes are sync: FastAPI runs them in its thread pool)."""
    ctx: ServiceContext = request.app.state.ctx
    with ctx.sessions() as session:
        yield session


# Module level: with postponed annotations FastAPI resolves these names in module globals.
Db = Annotated[Session, Depends(open_session)]
# An admin body is a small JSON object; a route that takes more says so (`max_body`).
MAX_ADMIN_BODY = 64 * 1024
_ERRORS: dict[int | str, dict[str, Any]] = {
    **{status: {"model": ApiError} for status in (401, 403, 404, 409, 422)},
    # AdminRoute's input rules, for every admin route that takes a body.
    400: {"model": ApiError, "description": "Not strict JSON"},
    413: {"model": ApiError, "description": "Body over the route's limit (64 KB by default)"},
}


def _error(status: int, error: str, description: str, **extra: str) -> JSONResponse:
    body = {"error": error, "error_description": description, **extra}
    return JSONResponse(body, status_code=status)


_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


class AdminRoute(APIRoute):
    """Renders the registry's refusals and FastAPI's 422s in the admin API's error format, and
    holds every admin body to the input rules before FastAPI sees it: read with a bound (413
    while reading, `max_body`) and parsed as strict JSON (400: web/body.py `strict_json`)."""

    max_body = MAX_ADMIN_BODY

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        limit = self.max_body

        async def route(request: Request) -> Response:
            # The token first (401/403 before 422): FastAPI would parse and validate the body
            # before running the `Operator` dependency, telling strangers about the schema.
            # The dependency's own check is then a verified-token cache hit.
            await _check_operator(request)
            if request.method in _BODY_METHODS:
                try:
                    request = await _checked_body(request, limit)
                except UncleanText as error:  # well-formed: a value no field takes, as below
                    return _error(422, "invalid_request", str(error))
            try:
                return await handler(request)
            except RequestValidationError as exc:
                return validation_error(exc)
            except MacConflict as exc:
                return _error(exc.status, exc.error, exc.description, client_id=exc.client_id)
            except RegistryError as exc:
                return _error(exc.status, exc.error, exc.description)

        return route


async def _checked_body(request: Request, limit: int) -> Request:
    """`request` with its body read (at most `limit` bytes) and checked as strict JSON; the
    route reads the same bytes again from the returned request. Raises `UncleanText`."""
    body = await read_body(request.headers.get("content-length"), request.stream(), limit)
    if body:
        try:
            strict_json(body)
        except UncleanText:
            raise
        except MalformedJson as error:
            raise InvalidRequest(str(error)) from None
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return Request(request.scope, replay)


def _with_agents(db: Session, devices: list[Device]) -> list[Device]:
    """Fill in each device's agent version and update state (release/routes.py keeps them)."""
    from sqlalchemy import select

    from provisioning.store.models import DeviceAgent

    ids = [d.client_id for d in devices]
    rows = db.scalars(select(DeviceAgent).where(DeviceAgent.device_id.in_(ids))).all()
    agents = {r.device_id: r for r in rows}
    for d in devices:
        a = agents.get(d.client_id)
        if a is not None:
            d.agent = {"version": a.version, "target": a.target, "state": a.state}
            d.agent["reason"] = a.reason
    return devices


def _device(row: DeviceRow) -> Device:
    client, state = row.client, row.state
    reading = None
    if state is not None and state.last_seq is not None and state.cars is not None:
        reading = Reading(
            seq=state.last_seq, cars=state.cars, ts=state.ts, received_at=state.received_at
        )
    counters = None
    if state is not None and state.g_seq is not None:
        counters = GateCounters(
            seq=state.g_seq,
            gate_in=state.g_in or 0,
            gate_out=state.g_out or 0,
            series=state.g_series or 1,
            series_since=state.g_series_at,
            faults=state.g_faults or 0,
            fault_at=state.g_fault_at,
        )
    return Device(
        client_id=client.client_id,
        lot=client.lot or "",
        name=client.name,
        mac=client.mac,
        enabled=client.enabled,
        created_at=client.created_at,
        updated_at=client.updated_at,
        last_seen_at=state.last_seen_at if state else None,
        reading=reading,
        counters=counters,
        health=state.health if state else None,
        health_at=state.health_at if state else None,
        issuer=client.issuer,
    )


def _operator_view(client: Client) -> OperatorView:
    return OperatorView(
        client_id=client.client_id,
        name=client.name,
        enabled=client.enabled,
        created_at=client.created_at,
        updated_at=client.updated_at,
    )


def install(app: FastAPI, ctx: ServiceContext) -> None:
    """Add the admin API to `app`."""
    router = APIRouter(prefix="/admin", tags=["admin"], route_class=AdminRoute, responses=_ERRORS)

    def changed(client_id: str) -> None:
        # The verifier caches client status for up to device_status_ttl_s; make the change
        # bite now on this server (other replicas catch up within that bound).
        ctx.verifier.clients.forget(client_id)

    @router.post("/devices", status_code=201, response_model=DeviceCreated | Device)
    def register_device(
        body: DeviceCreate, operator: Operator, db: Db, response: Response
    ) -> DeviceCreated | Device:
        """Register a board as a client; the 201 body holds its secret, shown this once. With
        `client_id` and `issuer`: a board of that trusted external server, no secret."""
        response.headers.update(NO_STORE)
        if body.client_id is not None and body.issuer is not None:
            client = external.create_device(
                db,
                operator.client_id,
                body.lot,
                body.name,
                body.client_id,
                body.issuer,
                ctx.settings.trusted_issuers,
                body.mac,
            )
            changed(client.client_id)  # an unknown-client answer may be cached
            response.headers["Location"] = f"/admin/devices/{client.client_id}"
            return _device(DeviceRow(client, None))
        client, secret = service.create_device(
            db, ctx.hasher, operator.client_id, body.lot, body.name, body.mac
        )
        response.headers["Location"] = f"/admin/devices/{client.client_id}"
        view = _device(DeviceRow(client, None))
        return DeviceCreated(**view.model_dump(), client_secret=SecretStr(secret))

    @router.get("/config", response_model=ServiceConfig)
    def service_config(_operator: Operator) -> ServiceConfig:
        """The audience external tokens must carry and the issuers trusted for them."""
        return ServiceConfig(
            ingest_audience=ctx.settings.ingest_audience,
            trusted_issuers=list(ctx.settings.trusted_issuers),
        )

    @router.get("/devices", response_model=DevicePage)
    def list_devices(
        _operator: Operator,
        db: Db,
        lot: Annotated[
            str | None, Query(json_schema_extra={"pattern": LOT_PATTERN, "maxLength": LOT_MAX})
        ] = None,
        mac: Annotated[str | None, Query(json_schema_extra={"pattern": MAC_PATTERN})] = None,
        limit: Annotated[int, Query(ge=1, le=service.MAX_PAGE)] = 100,
        cursor: Annotated[
            str | None, Query(json_schema_extra={"pattern": service.DEVICE_CURSOR_PATTERN})
        ] = None,
    ) -> DevicePage:
        """Live devices, oldest first; follow `next_cursor` for more."""
        page = service.list_devices(db, lot=lot, mac=mac, limit=limit, cursor=cursor)
        items = _with_agents(db, [_device(row) for row in page.items])
        return DevicePage(items=items, next_cursor=page.next_cursor)

    @router.get("/devices/{client_id}", response_model=Device)
    def show_device(client_id: ClientIdPath, _operator: Operator, db: Db) -> Device:
        """One device with its latest reading, health, agent version, newest crash report
        (`last_crash`) and vitals."""
        from provisioning.service.ingest import vitals

        device = _with_agents(db, [_device(service.get_device_row(db, client_id))])[0]
        device.last_crash = vitals.last_crash(db, client_id)
        device.vitals = vitals.latest(db, client_id)
        return device

    @router.patch("/devices/{client_id}", response_model=Device)
    def update_device(
        client_id: ClientIdPath, body: DeviceUpdate, operator: Operator, db: Db
    ) -> Device:
        """Rename a device or move it to another lot."""
        service.update_device(db, operator.client_id, client_id, lot=body.lot, name=body.name)
        changed(client_id)
        return _device(service.get_device_row(db, client_id))

    @router.post("/devices/{client_id}/disable", response_model=Device)
    def disable_device(client_id: ClientIdPath, operator: Operator, db: Db) -> Device:
        """Refuse the device tokens (`invalid_client`) and its current tokens (`invalid_token`)."""
        service.disable(db, operator.client_id, client_id)
        changed(client_id)
        return _device(service.get_device_row(db, client_id))

    @router.post("/devices/{client_id}/enable", response_model=Device)
    def enable_device(client_id: ClientIdPath, operator: Operator, db: Db) -> Device:
        """Let a disabled device authenticate again."""
        service.enable(db, operator.client_id, client_id)
        changed(client_id)
        return _device(service.get_device_row(db, client_id))

    def rotate(kind: str) -> Callable[..., SecretRotated]:
        """The rotate-secret route of a device or an operator (`kind`)."""

        def rotate_secret(
            client_id: ClientIdPath,
            operator: Operator,
            db: Db,
            response: Response,
            body: RotateSecret | None = None,
        ) -> SecretRotated:
            grace = body.grace_s if body and body.grace_s is not None else None
            client, secret = service.rotate_secret(
                db,
                ctx.hasher,
                operator.client_id,
                client_id,
                ctx.settings.secret_grace_s if grace is None else grace,
                kind=kind,
            )
            changed(client_id)  # a zero-grace rotation revokes its tokens: bite now here
            response.headers.update(NO_STORE)
            return SecretRotated(
                client_id=client.client_id,
                client_secret=SecretStr(secret),
                previous_secret_expires_at=client.previous_secret_expires_at,
            )

        return rotate_secret

    router.post(
        "/devices/{client_id}/rotate-secret",
        response_model=SecretRotated,
        name="rotate_secret",
        description="A new secret; the old one works for `grace_s` more (default "
        "PARK_SECRET_GRACE_S);\n`grace_s: 0` also revokes the tokens issued so far (a leaked "
        "secret).",
    )(rotate(DEVICE))

    @router.delete("/devices/{client_id}", status_code=204, response_class=Response)
    def delete_device(client_id: ClientIdPath, operator: Operator, db: Db) -> Response:
        """Soft delete: the device's secrets stop working, its MAC is free, readings stay."""
        service.delete_device(db, operator.client_id, client_id)
        changed(client_id)
        return Response(status_code=204)

    @router.get("/operators", response_model=OperatorList)
    def list_operators(_operator: Operator, db: Db) -> OperatorList:
        """Live operators, oldest first."""
        return OperatorList(items=[_operator_view(c) for c in service.list_operators(db)])

    @router.post("/operators", status_code=201, response_model=OperatorCreated)
    def create_operator(
        body: OperatorCreate, operator: Operator, db: Db, response: Response
    ) -> OperatorCreated:
        """Another operator; the 201 body holds its secret, shown this once."""
        client, secret = service.create_operator(db, ctx.hasher, operator.client_id, body.name)
        response.headers.update(NO_STORE)
        response.headers["Location"] = f"/admin/operators/{client.client_id}"
        return OperatorCreated(
            client_id=client.client_id, name=client.name, client_secret=SecretStr(secret)
        )

    @router.get("/operators/{client_id}", response_model=OperatorView)
    def show_operator(client_id: ClientIdPath, _operator: Operator, db: Db) -> OperatorView:
        """One operator."""
        return _operator_view(service.get_device(db, client_id, OPERATOR))

    @router.post("/operators/{client_id}/disable", response_model=OperatorView)
    def disable_operator(client_id: ClientIdPath, operator: Operator, db: Db) -> OperatorView:
        """Refuse the operator tokens and revoke those it holds (409 for the last enabled)."""
        client = service.disable(db, operator.client_id, client_id, OPERATOR)
        changed(client_id)
        return _operator_view(client)

    @router.post("/operators/{client_id}/enable", response_model=OperatorView)
    def enable_operator(client_id: ClientIdPath, operator: Operator, db: Db) -> OperatorView:
        """Let a disabled operator authenticate again (its old tokens stay revoked)."""
        client = service.enable(db, operator.client_id, client_id, OPERATOR)
        changed(client_id)
        return _operator_view(client)

    router.post(
        "/operators/{client_id}/rotate-secret",
        response_model=SecretRotated,
        name="rotate_operator_secret",
        description="As for a device: `grace_s: 0` ends the old secret and its tokens now.",
    )(rotate(OPERATOR))

    @router.delete("/operators/{client_id}", status_code=204, response_class=Response)
    def delete_operator(client_id: ClientIdPath, operator: Operator, db: Db) -> Response:
        """Soft delete (409 for the last enabled operator); its audit trail stays."""
        service.delete_device(db, operator.client_id, client_id, OPERATOR)
        changed(client_id)
        return Response(status_code=204)

    @router.get("/audit", response_model=AuditPage)
    def audit_log(
        _operator: Operator,
        db: Db,
        limit: Annotated[int, Query(ge=1, le=service.MAX_PAGE)] = 100,
        cursor: Annotated[
            str | None, Query(json_schema_extra={"pattern": service.AUDIT_CURSOR_PATTERN})
        ] = None,
        target: Annotated[str | None, Query(json_schema_extra={"pattern": NO_NUL_PATTERN})] = None,
    ) -> AuditPage:
        """Admin actions and token issuance, newest first."""
        page = service.list_audit(db, limit=limit, cursor=cursor, target=target)
        items = [AuditEntry.model_validate(event, from_attributes=True) for event in page.items]
        return AuditPage(items=items, next_cursor=page.next_cursor)

    app.include_router(router)
