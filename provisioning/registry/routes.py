"""The admin API: `/admin/devices` and `/admin/audit`, for operator tokens only.

Every route needs a Bearer token for `parkfleet-admin` with scope `devices:admin`, checked by the
shared verifier (401/403 per RFC 6750 §3.1). Errors are JSON `{"error", "error_description"}`
like the token endpoint's (RFC 6749 §5.2), including malformed bodies (422), unknown devices
(404) and a MAC registered twice (409, naming the device that has it). Responses that carry a
client secret are `Cache-Control: no-store` (as RFC 6749 §5.1 asks of token responses).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Query, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import SecretStr
from sqlalchemy.orm import Session

from provisioning.auth.deps import require_token
from provisioning.auth.errors import NO_STORE
from provisioning.auth.principal import Principal
from provisioning.auth.scopes import ADMIN_AUDIENCE, DEVICES_ADMIN
from provisioning.context import ServiceContext
from provisioning.registry import service
from provisioning.registry.schemas import (
    ApiError,
    AuditEntry,
    AuditPage,
    Device,
    DeviceCreate,
    DeviceCreated,
    DevicePage,
    DeviceUpdate,
    Reading,
    RotateSecret,
    SecretRotated,
)
from provisioning.registry.service import DeviceRow, MacConflict, RegistryError

Operator = Annotated[Principal, Depends(require_token(ADMIN_AUDIENCE, DEVICES_ADMIN))]


def open_session(request: Request) -> Iterator[Session]:
    """One session per request (routes are sync: FastAPI runs them in its thread pool)."""
    ctx: ServiceContext = request.app.state.ctx
    with ctx.sessions() as session:
        yield session


# Module level: with postponed annotations FastAPI resolves these names in module globals.
Db = Annotated[Session, Depends(open_session)]
_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ApiError} for status in (401, 403, 404, 422)
}


def _error(status: int, error: str, description: str, **extra: str) -> JSONResponse:
    body = {"error": error, "error_description": description, **extra}
    return JSONResponse(body, status_code=status)


def _describe(errors: list[dict[str, Any]]) -> str:
    """FastAPI's validation errors as one line: `lot: lot must be 1 to 64 characters`."""
    parts = []
    for item in errors:
        loc = [str(p) for p in item["loc"]]
        where = ".".join(loc[1:] if loc[:1] == ["body"] else loc) or "body"
        parts.append(f"{where}: {str(item['msg']).removeprefix('Value error, ')}")
    return "; ".join(parts)


class AdminRoute(APIRoute):
    """Renders the registry's refusals and FastAPI's 422s in the admin API's error format."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as exc:
                return _error(422, "invalid_request", _describe(jsonable_encoder(exc.errors())))
            except MacConflict as exc:
                return _error(exc.status, exc.error, exc.description, client_id=exc.client_id)
            except RegistryError as exc:
                return _error(exc.status, exc.error, exc.description)

        return route


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
        health=state.health if state else None,
        health_at=state.health_at if state else None,
    )


def install(app: FastAPI, ctx: ServiceContext) -> None:
    """Add the admin API to `app`."""
    router = APIRouter(prefix="/admin", tags=["admin"], route_class=AdminRoute, responses=_ERRORS)

    def changed(client_id: str) -> None:
        # The verifier caches client status for up to device_status_ttl_s; make the change
        # bite now on this server (other replicas catch up within that bound).
        ctx.verifier.clients.forget(client_id)

    @router.post("/devices", status_code=201, response_model=DeviceCreated)
    def register_device(
        body: DeviceCreate, operator: Operator, db: Db, response: Response
    ) -> DeviceCreated:
        """Register a board as a client; the 201 body holds its secret, shown this once."""
        client, secret = service.create_device(
            db, ctx.hasher, operator.client_id, body.lot, body.name, body.mac
        )
        response.headers.update(NO_STORE)
        response.headers["Location"] = f"/admin/devices/{client.client_id}"
        view = _device(DeviceRow(client, None))
        return DeviceCreated(**view.model_dump(), client_secret=SecretStr(secret))

    @router.get("/devices", response_model=DevicePage)
    def list_devices(
        _operator: Operator,
        db: Db,
        lot: str | None = None,
        mac: str | None = None,
        limit: Annotated[int, Query(ge=1, le=service.MAX_PAGE)] = 100,
        cursor: str | None = None,
    ) -> DevicePage:
        """Live devices, oldest first; follow `next_cursor` for more."""
        page = service.list_devices(db, lot=lot, mac=mac, limit=limit, cursor=cursor)
        items = _with_agents(db, [_device(row) for row in page.items])
        return DevicePage(items=items, next_cursor=page.next_cursor)

    @router.get("/devices/{client_id}", response_model=Device)
    def show_device(client_id: str, _operator: Operator, db: Db) -> Device:
        """One device with its latest reading, health and agent version."""
        return _with_agents(db, [_device(service.get_device_row(db, client_id))])[0]

    @router.patch("/devices/{client_id}", response_model=Device)
    def update_device(client_id: str, body: DeviceUpdate, operator: Operator, db: Db) -> Device:
        """Rename a device or move it to another lot."""
        service.update_device(db, operator.client_id, client_id, lot=body.lot, name=body.name)
        changed(client_id)
        return _device(service.get_device_row(db, client_id))

    @router.post("/devices/{client_id}/disable", response_model=Device)
    def disable_device(client_id: str, operator: Operator, db: Db) -> Device:
        """Refuse the device tokens (`invalid_client`) and its current tokens (`invalid_token`)."""
        service.disable(db, operator.client_id, client_id)
        changed(client_id)
        return _device(service.get_device_row(db, client_id))

    @router.post("/devices/{client_id}/enable", response_model=Device)
    def enable_device(client_id: str, operator: Operator, db: Db) -> Device:
        """Let a disabled device authenticate again."""
        service.enable(db, operator.client_id, client_id)
        changed(client_id)
        return _device(service.get_device_row(db, client_id))

    @router.post("/devices/{client_id}/rotate-secret", response_model=SecretRotated)
    def rotate_secret(
        client_id: str,
        operator: Operator,
        db: Db,
        response: Response,
        body: RotateSecret | None = None,
    ) -> SecretRotated:
        """A new secret; the old one works for `grace_s` more (default PARK_SECRET_GRACE_S)."""
        grace = body.grace_s if body and body.grace_s is not None else None
        client, secret = service.rotate_secret(
            db,
            ctx.hasher,
            operator.client_id,
            client_id,
            ctx.settings.secret_grace_s if grace is None else grace,
        )
        response.headers.update(NO_STORE)
        return SecretRotated(
            client_id=client.client_id,
            client_secret=SecretStr(secret),
            previous_secret_expires_at=client.previous_secret_expires_at,
        )

    @router.delete("/devices/{client_id}", status_code=204, response_class=Response)
    def delete_device(client_id: str, operator: Operator, db: Db) -> Response:
        """Soft delete: the device's secrets stop working, its MAC is free, readings stay."""
        service.delete_device(db, operator.client_id, client_id)
        changed(client_id)
        return Response(status_code=204)

    @router.get("/audit", response_model=AuditPage)
    def audit_log(
        _operator: Operator,
        db: Db,
        limit: Annotated[int, Query(ge=1, le=service.MAX_PAGE)] = 100,
        cursor: str | None = None,
        target: str | None = None,
    ) -> AuditPage:
        """Admin actions and token issuance, newest first."""
        page = service.list_audit(db, limit=limit, cursor=cursor, target=target)
        items = [AuditEntry.model_validate(event, from_attributes=True) for event in page.items]
        return AuditPage(items=items, next_cursor=page.next_cursor)

    app.include_router(router)
