"""`/admin/lots`: lot records over the admin API (same token, errors and audit as devices).

POST   /admin/lots            {"name", "capacity", "label"}   201, 409 if it has a record
GET    /admin/lots            every record
GET    /admin/lots/{name}     one record, 404 without one
PATCH  /admin/lots/{name}     {"capacity"?, "label"?}; "capacity": null clears it
DELETE /admin/lots/{name}     204; the lot's devices and readings stay
POST   /admin/lots/{name}/recount {"cars"}   the lot's new baseline, audited
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, FastAPI, Path, Query, Response
from pydantic import AfterValidator

from provisioning.common.admin_schemas import (
    LotCreate,
    LotList,
    LotRecord,
    LotRecount,
    LotUpdate,
    RecountResult,
)
from provisioning.common.rules import LOT_MAX, LOT_PATTERN, check_lot
from provisioning.service.context import ServiceContext
from provisioning.service.lots import records as lots
from provisioning.service.registry.routes import _ERRORS, AdminRoute, Db, Operator
from provisioning.service.registry.service import MAX_PAGE
from provisioning.store.models import Lot

# The page size of every keyset-paged admin list: 100 by default, at most MAX_PAGE.
PageSize = Annotated[int, Query(ge=1, le=MAX_PAGE)]
# A lot's name in the path: the lot rule, as the document says (the handlers check it again).
LotName = Annotated[
    str, Path(max_length=LOT_MAX, json_schema_extra={"pattern": LOT_PATTERN, "minLength": 1})
]
# A page's cursor is the last lot name of the page before.
LotCursor = Annotated[
    str | None,
    AfterValidator(lambda c: c if c is None else check_lot(c)),
    Query(max_length=LOT_MAX, json_schema_extra={"pattern": LOT_PATTERN}),
]


def _record(lot: Lot) -> LotRecord:
    return LotRecord.model_validate(lot, from_attributes=True)


def install(app: FastAPI, ctx: ServiceContext) -> None:
    """Add `/admin/lots` to `app`."""
    router = APIRouter(
        prefix="/admin/lots", tags=["admin"], route_class=AdminRoute, responses=_ERRORS
    )

    @router.post("", status_code=201, response_model=LotRecord)
    def create_lot(body: LotCreate, operator: Operator, db: Db, response: Response) -> LotRecord:
        """Give a lot a record: its capacity (for `free` spaces) and label."""
        lot = lots.create_lot(db, operator.client_id, body.name, body.capacity, body.label)
        response.headers["Location"] = f"/admin/lots/{lot.name}"
        return _record(lot)

    @router.get("", response_model=LotList)
    def list_lots(
        _operator: Operator, db: Db, limit: PageSize = 100, cursor: LotCursor = None
    ) -> LotList:
        """Lot records by name, `limit` at a time; follow `next_cursor` for more."""
        found = lots.list_lots(db, limit, cursor)
        more = found[-1].name if len(found) == limit else None
        return LotList(items=[_record(lot) for lot in found], next_cursor=more)

    @router.get("/{name}", response_model=LotRecord)
    def show_lot(name: LotName, _operator: Operator, db: Db) -> LotRecord:
        """One lot record."""
        return _record(lots.get_lot(db, name))

    @router.patch("/{name}", response_model=LotRecord)
    def update_lot(name: LotName, body: LotUpdate, operator: Operator, db: Db) -> LotRecord:
        """Change the capacity and/or label; fields not sent stay as they are."""
        capacity = body.capacity if "capacity" in body.model_fields_set else lots.UNSET
        return _record(lots.update_lot(db, operator.client_id, name, capacity, body.label))

    @router.delete("/{name}", status_code=204, response_class=Response)
    def delete_lot(name: LotName, operator: Operator, db: Db) -> Response:
        """Drop the record; the lot keeps working from its devices as before."""
        lots.delete_lot(db, operator.client_id, name)
        return Response(status_code=204)

    @router.post("/{name}/recount", response_model=RecountResult)
    def recount_lot(name: LotName, body: LotRecount, operator: Operator, db: Db) -> RecountResult:
        """Set the lot's count to what an operator counted: gate flows count from here."""
        fan_out = ctx.mqtt is not None
        since, counters, previous = lots.recount(db, operator.client_id, name, body.cars, fan_out)
        if ctx.mqtt is not None:
            ctx.mqtt.wake()
        return RecountResult(
            lot=name, cars=body.cars, since=since, previous=previous, counters=counters
        )

    app.include_router(router)
