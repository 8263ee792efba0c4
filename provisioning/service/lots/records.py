"""Lots as records: a name, an optional capacity and a label.

A lot exists for the ingestion API as soon as a device is registered in it; a record only adds
what the product cannot know by itself: how many spaces the lot has (so `free` can be shown)
and the label people read. Each change is one transaction with its audit event, like every
registry change (service.py).
"""

from __future__ import annotations

import time

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from provisioning.common.admin_schemas import CAPACITY_MAX
from provisioning.common.rules import check_lot, check_name
from provisioning.service.registry.service import Conflict, InvalidInput, RegistryError, checked
from provisioning.store import audit
from provisioning.store.models import Lot

_UNSET = object()


class LotNotFound(RegistryError):
    error = "not_found"
    status = 404

    def __init__(self, name: str) -> None:
        super().__init__(f"no lot record named {name!r}")


class LotExists(Conflict):
    def __init__(self, name: str) -> None:
        super().__init__(f"lot {name!r} already has a record; change it with PATCH")


def _label(label: str) -> str:
    try:
        return check_name(label)
    except ValueError as error:
        raise InvalidInput(str(error).replace("name", "label", 1)) from None


def _capacity(capacity: int | None) -> int | None:
    if capacity is not None and not 0 <= capacity <= CAPACITY_MAX:
        raise InvalidInput(f"capacity must be 0 to {CAPACITY_MAX}")
    return capacity


def create_lot(
    session: Session, actor: str, name: str, capacity: int | None, label: str | None
) -> Lot:
    """Give lot `name` a record; `LotExists` if it has one."""
    name = checked(check_lot, name)
    lot = Lot(
        name=name,
        capacity=_capacity(capacity),
        label=_label(label) if label is not None else name,
    )
    if session.get(Lot, name) is not None:
        raise LotExists(name)
    lot.created_at = lot.updated_at = time.time()
    session.add(lot)
    audit.record(session, actor, "lot.create", name, {"capacity": lot.capacity, "label": lot.label})
    try:
        session.commit()
    except IntegrityError:  # a concurrent create won
        session.rollback()
        raise LotExists(name) from None
    return lot


def get_lot(session: Session, name: str) -> Lot:
    """The record of lot `name`, or `LotNotFound`."""
    lot = session.get(Lot, checked(check_lot, name))
    if lot is None:
        raise LotNotFound(name)
    return lot


def list_lots(session: Session, limit: int, after: str | None = None) -> list[Lot]:
    """Lot records by name, at most `limit`, those named after `after` (a page's cursor)."""
    query = select(Lot).order_by(Lot.name).limit(limit)
    if after is not None:
        query = query.where(Lot.name > after)
    return list(session.scalars(query))


def update_lot(
    session: Session,
    actor: str,
    name: str,
    capacity: int | object | None = _UNSET,
    label: str | None = None,
) -> Lot:
    """Change a lot's capacity (None clears it) and/or label; omitted fields stay."""
    new_capacity = _UNSET if capacity is _UNSET else _capacity(capacity)  # type: ignore[arg-type]
    new_label = _label(label) if label is not None else None
    lot = get_lot(session, name)
    changes: dict[str, object] = {}
    if new_capacity is not _UNSET and new_capacity != lot.capacity:
        changes["capacity"] = {"from": lot.capacity, "to": new_capacity}
        lot.capacity = new_capacity  # type: ignore[assignment]
    if new_label is not None and new_label != lot.label:
        changes["label"] = {"from": lot.label, "to": new_label}
        lot.label = new_label
    if changes:
        lot.updated_at = time.time()
        audit.record(session, actor, "lot.update", lot.name, {"changes": changes})
        session.commit()
    return lot


def delete_lot(session: Session, actor: str, name: str) -> None:
    """Drop the record; the lot's devices and readings stay, and it works as before."""
    lot = get_lot(session, name)
    audit.record(
        session, actor, "lot.delete", lot.name, {"capacity": lot.capacity, "label": lot.label}
    )
    session.delete(lot)
    session.commit()


def recount(
    session: Session, actor: str, name: str, cars: int, queue_message: bool
) -> tuple[float, dict[str, list[int]], int]:
    """An operator counted `cars` in lot `name`: from now the lot's baseline is
    `cars` and its gate boards' flows count from here; the boards' counters are not reset (the
    server keeps their values at this moment, returned and audited). With `queue_message`, the
    lot's new total is queued for MQTT in the same transaction. `LotNotFound` for a lot with
    neither a record nor a registered device. Returns (since, counters, the total before)."""
    from provisioning.service.ingest import outbox
    from provisioning.service.lots import occupancy
    from provisioning.store import sql

    name = checked(check_lot, name)
    if not 0 <= cars <= CAPACITY_MAX:
        raise InvalidInput(f"cars must be 0 to {CAPACITY_MAX}")
    tx = sql.Tx.of(session.connection())
    before = occupancy.occupancy(tx, name).get(name)
    if before is None and session.get(Lot, name) is None:
        raise LotNotFound(name)
    now = time.time()
    counters = occupancy.recount(tx, name, cars, actor, now)
    previous = before.cars if before is not None else 0
    audit.record(
        session,
        actor,
        "lot.recount",
        name,
        {"cars": cars, "previous": previous, "counters": counters},
    )
    if queue_message:
        total = occupancy.occupancy(tx, name)[name]
        message = outbox.occupancy_message(name, total.cars, total.devices, now)
        outbox.enqueue(tx, [message], now)
    session.commit()
    return now, counters, previous


UNSET = _UNSET
