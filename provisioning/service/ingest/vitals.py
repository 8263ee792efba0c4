"""Reading what boards reported about themselves: the newest crash report, their vitals now
and over time (stored with the counts: ingest/store.py)."""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from provisioning.store.models import CrashReport, VitalsSample

# The vitals a board page draws over time (name, label, unit).
CHARTED = (
    ("free_heap", "free heap", "B"),
    ("heap_min", "lowest free heap", "B"),
    ("rssi", "RSSI", "dBm"),
    ("post_fails", "failed uploads", ""),
)

_Report = TypeVar("_Report", CrashReport, VitalsSample)


def _newest_first(model: type[_Report], device_id: str) -> Select[_Report]:
    """The board's reports of one kind, newest receipt first (the id breaks a tie)."""
    return (
        select(model).where(model.device_id == device_id).order_by(model.at.desc(), model.id.desc())
    )


def last_crash(db: Session, device_id: str) -> dict[str, Any] | None:
    """The board's newest crash report: `traceback`, `version` (that crashed), `count`
    (crashes it covers), `cause`, `running` (the version that sent it), `at` (receipt)."""
    row = db.scalars(_newest_first(CrashReport, device_id).limit(1)).first()
    if row is None:
        return None
    return {
        "traceback": row.traceback,
        "version": row.version,
        "count": row.count,
        "cause": row.cause,
        "running": row.running,
        "at": row.at,
    }


def _sample(row: VitalsSample) -> dict[str, Any]:
    return {"at": row.at, "version": row.version, **row.data}


def latest(db: Session, device_id: str) -> dict[str, Any] | None:
    """The board's newest vitals: its health fields with `at` and the `version` it ran."""
    row = db.scalars(_newest_first(VitalsSample, device_id).limit(1)).first()
    return None if row is None else _sample(row)


def series(db: Session, device_id: str, since: float, limit: int = 240) -> list[dict[str, Any]]:
    """The board's vitals since `since`, oldest first, at most the newest `limit`."""
    query = _newest_first(VitalsSample, device_id).where(VitalsSample.at >= since)
    rows = db.scalars(query.limit(limit)).all()
    return [_sample(r) for r in reversed(rows)]
