"""Storing counts and answering lot and device queries, on SQLite and PostgreSQL alike.

Every function takes a Core `Connection` and runs inside the caller's transaction (a Session's
work can pass `session.connection()`). Lot totals read `device_state` (one row per device, the
latest reading by seq) and never scan `readings`; a device's readings are read through the unique
index `(device_id, seq)`, so both stay fast with millions of rows.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, and_, func, select

from provisioning.auth.scopes import DEVICE
from provisioning.ingest import outbox
from provisioning.ingest.schemas import CountsBatch, Reading
from provisioning.store import sql
from provisioning.store.models import Client, DeviceState
from provisioning.store.models import Reading as ReadingRow

_CLIENTS = Client.__table__
_STATE = DeviceState.__table__
_READINGS = ReadingRow.__table__
_READING_COLUMNS = ("device_id", "lot", "seq", "cars", "ts", "received_at")
# RETURNING lists what was really inserted: duplicates are skipped by the unique index, not
# counted, and not published again.
_INSERT_SUFFIX = "ON CONFLICT (device_id, seq) DO NOTHING RETURNING seq"

_DEVICE_LOT = (
    "SELECT lot, enabled FROM clients WHERE client_id = ? AND kind = 'device' "
    "AND deleted_at IS NULL"
)
# One upsert records the visit, the health (if sent) and the newest reading (if any). Only a
# newer seq replaces the latest reading, so late replays from a board's spool do not; SET
# expressions read the row as it was before the update (SQLite and PostgreSQL alike).
_NEWER = "(device_state.last_seq IS NULL OR excluded.last_seq > device_state.last_seq)"
_STATE_UPSERT = (
    "INSERT INTO device_state (device_id, last_seen_at, last_seq, cars, ts, received_at{h}) "
    "VALUES (?, ?, ?, ?, ?, ?{hv}) ON CONFLICT (device_id) DO UPDATE SET "
    "last_seen_at = excluded.last_seen_at{hs}, "
    + ", ".join(
        f"{col} = CASE WHEN {_NEWER} THEN excluded.{col} ELSE device_state.{col} END"
        for col in ("last_seq", "cars", "ts", "received_at")
    )
)
_SEEN = _STATE_UPSERT.format(h="", hv="", hs="")
_SEEN_WITH_HEALTH = _STATE_UPSERT.format(
    h=", health, health_at",
    hv=", ?, ?",
    hs=", health = excluded.health, health_at = excluded.health_at",
)
_LOT_TOTAL = (
    "SELECT COALESCE(SUM(s.cars), 0), COUNT(*) FROM clients c "
    "LEFT JOIN device_state s ON s.device_id = c.client_id "
    "WHERE c.lot = ? AND c.kind = 'device' AND c.deleted_at IS NULL"
)


class UnknownDevice(LookupError):
    """The token's device is not (or no longer) registered and enabled."""


@dataclass(frozen=True, slots=True)
class IngestResult:
    accepted: int
    duplicates: int
    lot: str
    update: str | None = None  # the version the board should run, when it runs another


def store_counts(
    tx: sql.Tx,
    device_id: str,
    batch: CountsBatch,
    received_at: float,
    fan_out: bool,
) -> IngestResult:
    """Store a validated batch for `device_id` in the caller's transaction (`sql.transaction`,
    or `sql.Tx.of(connection)`).

    Each (device, seq) is stored once; the device's latest reading, last-seen time and health
    are updated; with `fan_out`, the new readings and the lot's new total are queued in the
    MQTT outbox in the same transaction. Raises `UnknownDevice`.
    """
    rows = sql.run(tx, _DEVICE_LOT, (device_id,))
    if not rows or not rows[0][1] or rows[0][0] is None:
        raise UnknownDevice(device_id)
    # Readings count towards the lot the device is registered in now, not the token's claim.
    lot: str = rows[0][0]
    inserted: list[Reading] = []
    if batch.readings:
        params: list[object] = []
        for seq, cars, ts in batch.readings:
            params += (device_id, lot, seq, cars, ts, received_at)
        template = sql.values_insert(
            "readings", _READING_COLUMNS, len(batch.readings), _INSERT_SUFFIX
        )
        new = {seq for (seq,) in sql.run(tx, template, params)}
        inserted = (
            batch.readings
            if len(new) == len(batch.readings)
            else [r for r in batch.readings if r[0] in new]
        )
    # seqs are unique, so max() is the reading with the highest seq; all None: no new reading.
    latest: tuple[object, ...] = (*max(inserted), received_at) if inserted else (None,) * 4
    state = (device_id, received_at, *latest)
    if batch.health is None:
        sql.run(tx, _SEEN, state)
    else:
        health = json.dumps(batch.health, separators=(",", ":"))
        sql.run(tx, _SEEN_WITH_HEALTH, (*state, health, received_at))
    if inserted and fan_out:
        _queue_messages(tx, lot, device_id, inserted, received_at)
    update = agent_report(tx, device_id, batch.agent, received_at)
    return IngestResult(len(inserted), batch.received - len(inserted), lot, update)


_AGENT = "SELECT version, target, state FROM device_agent WHERE device_id = ?"
_AGENT_UPSERT = (
    "INSERT INTO device_agent (device_id, version, state, reason, updated_at) "
    "VALUES (?, ?, ?, ?, ?) ON CONFLICT (device_id) DO UPDATE SET version = excluded.version, "
    "state = COALESCE(excluded.state, device_agent.state), "
    "reason = CASE WHEN excluded.state IS NULL THEN device_agent.reason ELSE excluded.reason END, "
    "updated_at = excluded.updated_at"
)
_AUDIT = "INSERT INTO audit_log (at, actor, action, target, detail) VALUES (?, ?, ?, ?, ?)"


def agent_report(
    tx: sql.Tx, device_id: str, agent: dict[str, str] | None, now: float
) -> str | None:
    """Record the agent's report (version, update state; a state change is audited as
    `agent.<state>`); return the version the board should install, if it runs another."""
    rows = sql.run(tx, _AGENT, (device_id,))
    version, target, known = rows[0] if rows else (None, None, None)
    if agent is not None:
        state = agent.get("update")
        if state is None and agent["version"] == target and known not in (None, "confirmed"):
            # A board reports without a state only outside a trial: the confirmation it sent
            # was lost to a power cut, the target runs confirmed all the same.
            state = "confirmed"
        sql.run(tx, _AGENT_UPSERT, (device_id, agent["version"], state, agent.get("reason"), now))
        version = agent["version"]
        if state:
            detail = {k: agent[k] for k in ("version", "reason", "target") if k in agent}
            sql.run(tx, _AUDIT, (now, device_id, f"agent.{state}", device_id, json.dumps(detail)))
    if target and version and target != version:
        return str(target)
    return None


def _queue_messages(
    tx: sql.Tx, lot: str, device_id: str, readings: list[Reading], received_at: float
) -> None:
    if tx.postgresql:
        # Serialise a lot's writers until commit, so each total includes every earlier batch and
        # outbox ids follow commit order within the lot. SQLite has one writer at a time anyway.
        sql.run(tx, "SELECT pg_advisory_xact_lock(hashtext(?))", (lot,))
    ((cars, devices),) = sql.run(tx, _LOT_TOTAL, (lot,))
    messages = outbox.reading_messages(lot, device_id, readings, received_at)
    messages.append(outbox.occupancy_message(lot, int(cars), int(devices), received_at))
    outbox.enqueue(tx, messages, received_at)


def _registered() -> Any:
    return and_(_CLIENTS.c.kind == DEVICE, _CLIENTS.c.deleted_at.is_(None))


def list_lots(conn: Connection) -> list[dict[str, Any]]:
    """Every lot with at least one registered device: `{"lot", "cars", "devices"}`."""
    query = (
        select(
            _CLIENTS.c.lot,
            func.coalesce(func.sum(_STATE.c.cars), 0).label("cars"),
            func.count().label("devices"),
        )
        .select_from(_CLIENTS.outerjoin(_STATE, _STATE.c.device_id == _CLIENTS.c.client_id))
        .where(_registered(), _CLIENTS.c.lot.is_not(None))
        .group_by(_CLIENTS.c.lot)
        .order_by(_CLIENTS.c.lot)
    )
    return [
        {"lot": r.lot, "cars": int(r.cars), "devices": int(r.devices)} for r in conn.execute(query)
    ]


def lot_detail(conn: Connection, lot: str) -> dict[str, Any] | None:
    """`{"lot", "cars", "devices": [...]}`: the sum of each registered device's latest reading
    (0 before any); None if no device is registered in `lot`."""
    query = (
        select(
            _CLIENTS.c.client_id,
            _STATE.c.cars,
            _STATE.c.last_seq,
            _STATE.c.ts,
            _STATE.c.received_at,
        )
        .select_from(_CLIENTS.outerjoin(_STATE, _STATE.c.device_id == _CLIENTS.c.client_id))
        .where(_registered(), _CLIENTS.c.lot == lot)
        .order_by(_CLIENTS.c.client_id)
    )
    devices = [
        {
            "device_id": r.client_id,
            "cars": r.cars or 0,
            "seq": r.last_seq,
            "ts": r.ts,
            "received_at": r.received_at,
        }
        for r in conn.execute(query)
    ]
    if not devices:
        return None
    return {"lot": lot, "cars": sum(d["cars"] for d in devices), "devices": devices}


def device_readings(
    conn: Connection, device_id: str, since_seq: int | None, limit: int
) -> dict[str, Any] | None:
    """A device's stored readings with seq > `since_seq`, in seq order, at most `limit`.

    `next_since_seq` is the value to pass for the next page, or None after the last one. None
    for a client that is not a device (deleted devices keep their history).
    """
    kind = conn.execute(
        select(_CLIENTS.c.kind).where(_CLIENTS.c.client_id == device_id)
    ).scalar_one_or_none()
    if kind != DEVICE:
        return None
    query = (
        select(
            _READINGS.c.seq,
            _READINGS.c.cars,
            _READINGS.c.ts,
            _READINGS.c.received_at,
            _READINGS.c.lot,
        )
        .where(_READINGS.c.device_id == device_id)
        .order_by(_READINGS.c.seq)
        .limit(limit)
    )
    if since_seq is not None:
        query = query.where(_READINGS.c.seq > since_seq)
    readings = [
        {"seq": r.seq, "cars": r.cars, "ts": r.ts, "received_at": r.received_at, "lot": r.lot}
        for r in conn.execute(query)
    ]
    next_since = readings[-1]["seq"] if len(readings) == limit else None
    return {"device_id": device_id, "readings": readings, "next_since_seq": next_since}
