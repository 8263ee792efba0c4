"""Storing counts and answering lot and device queries, on SQLite and PostgreSQL alike.

Every function takes a Core `Connection` and runs inside the caller's transaction (a Session's
work can pass `session.connection()`). Lot totals read `device_state` (one row per device, its
current reading: seqrule.py) and never scan `readings`; a device's readings are read through
the unique index `(device_id, seq)`, so both stay fast with millions of rows.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, and_, select

from provisioning.common.scopes import DEVICE
from provisioning.service.ingest import outbox, seqrule
from provisioning.service.ingest.schemas import CountsBatch, GateReading, Reading
from provisioning.service.lots import history, liveness, occupancy
from provisioning.store import sql
from provisioning.store.ingest_sql import (
    AGENT_UPSERT,
    AUDIT,
    DEVICE_LOT,
    INSERT_SUFFIX,
    LOCK_LOTS,
    READING_COLUMNS,
    REFUSED,
    SEEN,
    SEEN_WITH_HEALTH,
)
from provisioning.store.models import Client, DeviceState, Lot
from provisioning.store.models import Reading as ReadingRow

_CLIENTS = Client.__table__
_STATE = DeviceState.__table__
_READINGS = ReadingRow.__table__
_LOTS = Lot.__table__


class UnknownDevice(LookupError):
    """The token's device is not (or no longer) registered and enabled."""


@dataclass(frozen=True, slots=True)
class IngestResult:
    accepted: int
    duplicates: int
    lot: str
    new_series: int = 0  # gate counters that went backwards in this post (ingest/occupancy.py)
    update: str | None = None  # the version the board should run, when it runs another


Item = tuple[str, CountsBatch]  # (device_id, its validated batch)


def store_counts(
    tx: sql.Tx,
    device_id: str,
    batch: CountsBatch,
    received_at: float,
    fan_out: bool,
) -> IngestResult:
    """Store a validated batch for `device_id` in the caller's transaction (`sql.transaction`,
    or `sql.Tx.of(connection)`): `store_group` of one. Raises `UnknownDevice`."""
    (outcome,) = store_group(tx, [(device_id, batch)], received_at, fan_out)
    if isinstance(outcome, UnknownDevice):
        raise outcome
    return outcome


def store_group(
    tx: sql.Tx, items: Sequence[Item], received_at: float, fan_out: bool
) -> list[IngestResult | UnknownDevice]:
    """Store validated batches, one per item, in the caller's transaction; one outcome per item
    in order: its result, or `UnknownDevice` (that item wrote nothing).

    Each (device, seq) is stored once; the device's latest reading, last-seen time and health
    are updated; with `fan_out`, the new readings and each lot's new total are queued in the
    MQTT outbox in the same transaction.

    Two phases, so that concurrent transactions (several workers or instances on PostgreSQL,
    each writing groups) can never deadlock: first each item's own rows (device_state, readings,
    occupancy_rollup, device_agent), items taken in device id order so that row locks are always
    taken in one global order; then the lots' advisory locks and outbox messages. A transaction
    holding a lot lock has all its row locks already, so it never waits for one.
    """
    outcomes: dict[int, IngestResult | UnknownDevice] = {}
    news: list[tuple[int, str, tuple[str, str, bool]]] = []  # (item, lot, readings message)
    # sorted() is stable: a device's items keep their arrival order.
    for at in sorted(range(len(items)), key=lambda i: items[i][0]):
        device_id, batch = items[at]
        try:
            result, inserted, gates = _store_device(tx, device_id, batch, received_at)
        except UnknownDevice as refused:
            outcomes[at] = refused
            continue
        outcomes[at] = result
        if (inserted or gates) and fan_out:
            message = outbox.readings_message(result.lot, device_id, inserted, received_at, gates)
            news.append((at, result.lot, message))
    if news:
        news.sort()  # arrival order
        _queue_messages(tx, [(lot, message) for _at, lot, message in news], received_at)
    return [outcomes[at] for at in range(len(items))]


def _store_device(
    tx: sql.Tx, device_id: str, batch: CountsBatch, received_at: float
) -> tuple[IngestResult, list[Reading], list[GateReading]]:
    """One item's own rows; its result and the readings it stored. Raises `UnknownDevice`
    before writing anything."""
    rows = sql.run(tx, DEVICE_LOT, (device_id,))
    if not rows or not rows[0][1] or rows[0][0] is None:
        raise UnknownDevice(device_id)
    # Readings count towards the lot the device is registered in now, not the token's claim.
    lot: str = rows[0][0]
    inserted: list[Reading] = []
    gates: list[GateReading] = []
    if batch.readings or batch.gates:
        params: list[object] = []
        for seq, cars, ts in batch.readings:
            params += (device_id, lot, seq, cars, None, None, ts, received_at)
        for seq, n_in, n_out, ts in batch.gates:
            params += (device_id, lot, seq, None, n_in, n_out, ts, received_at)
        returned = sql.insert_values(tx, "readings", READING_COLUMNS, params, INSERT_SUFFIX)
        new = {seq for (seq,) in returned}
        inserted = [r for r in batch.readings if r[0] in new]
        gates = [g for g in batch.gates if g[0] in new]
    if inserted:
        history.record(tx, lot, device_id, inserted, received_at)
    # The current reading: the last of this post's new readings that seqrule takes; a gate
    # reading's cars is NULL (its flows live in the g_* columns).
    candidates: dict[int, tuple[int, int | None, float | None]] = {r[0]: r for r in inserted}
    candidates.update({g[0]: (g[0], None, g[3]) for g in gates})
    taken, _held, suspect = seqrule.track(sorted(candidates), rows[0][2], rows[0][3])
    latest: tuple[object, ...] = (*candidates[taken[-1]], received_at) if taken else (None,) * 4
    state = (device_id, received_at, *latest, suspect)
    if batch.health is None:
        sql.run(tx, SEEN, state)
    else:
        health = json.dumps(batch.health, separators=(",", ":"))
        sql.run(tx, SEEN_WITH_HEALTH, (*state, health, received_at))
    if batch.refused:
        sql.run(tx, REFUSED, (batch.refused, received_at, device_id))
    if batch.health is not None or batch.crash is not None:
        # Only posts that carry them pay for these rows (a health report comes every few
        # minutes, a crash report after a crash): the counts path is unchanged without.
        running = batch.agent["version"] if batch.agent else rows[0][4]
        _record_health(tx, device_id, batch, running, received_at)
    breaks = 0
    if gates:
        moved, breaks = occupancy.advance(tx, device_id, gates, received_at)
        if moved:
            history.record(tx, lot, device_id, moved, received_at)
    stored = len(inserted) + len(gates)
    update = agent_report(tx, device_id, batch.agent, received_at, tuple(rows[0][4:]))
    return IngestResult(stored, batch.received - stored, lot, breaks, update), inserted, gates


_VITALS = "INSERT INTO vitals (device_id, at, version, data) VALUES (?, ?, ?, ?)"
_CRASH = (
    "INSERT INTO crash_reports (device_id, at, version, running, cause, count, traceback) "
    "VALUES (?, ?, ?, ?, ?, ?, ?)"
)


def _record_health(
    tx: sql.Tx, device_id: str, batch: CountsBatch, running: str | None, now: float
) -> None:
    """Store the post's vitals and crash report with the version the board runs (`running`:
    its report in this post, else the one on record)."""
    if batch.health is not None:
        data = json.dumps(batch.health, separators=(",", ":"))
        sql.run(tx, _VITALS, (device_id, now, running, data))
    crash = batch.crash
    if crash is not None:
        row = (device_id, now, crash.version, running, crash.cause, crash.count, crash.traceback)
        sql.run(tx, _CRASH, row)


def agent_report(
    tx: sql.Tx,
    device_id: str,
    agent: dict[str, str] | None,
    now: float,
    stored: tuple[Any, ...],
) -> str | None:
    """Record the agent's report (version, update state; a change of state or version is
    audited once as `agent.<state>`); return the version the board should install, if it runs
    another.

    `stored` is the board's (version, target, state) row as read with its lot (all None when it
    has none): without a report, nothing is written and nothing more is read."""
    version, target, known = stored
    if agent is not None:
        state = agent.get("update")
        if state is None and agent["version"] == target and known not in (None, "confirmed"):
            # A board reports without a state only outside a trial: the confirmation it sent
            # was lost to a power cut, the target runs confirmed all the same.
            state = "confirmed"
        changed = agent["version"] != version or state not in (None, known)
        if changed or agent.get("reason") is not None:
            sql.run(
                tx, AGENT_UPSERT, (device_id, agent["version"], state, agent.get("reason"), now)
            )
        version = agent["version"]
        # Audited once per change, not per post: a board repeats its report on every post
        # until the state moves on, and one token must not grow the audit log at its rate.
        if state and changed:
            detail = {k: agent[k] for k in ("version", "reason", "target") if k in agent}
            sql.run(tx, AUDIT, (now, device_id, f"agent.{state}", device_id, json.dumps(detail)))
    if target and version and target != version:
        return str(target)
    return None


def _queue_messages(
    tx: sql.Tx, news: list[tuple[str, tuple[str, str, bool]]], received_at: float
) -> None:
    """Queue the readings messages `news` ((lot, message) in arrival order) and, after each
    lot's own, that lot's total.

    One total per lot per group, not per post: the total is a retained topic, whose subscribers
    only ever need the newest, and it is read once per lot instead of once per post. Its
    readings messages come before it, so a subscriber that saw a total has seen what it counts.
    """
    lots = sorted({lot for lot, _message in news})
    if tx.postgresql:
        # Serialise a lot's writers until commit, so each total includes every earlier batch and
        # outbox ids follow commit order within the lot. SQLite has one writer at a time anyway.
        # The recount takes the same lock (occupancy.recount).
        sql.run(tx, LOCK_LOTS, (lots,))
    messages: list[tuple[str, str, bool]] = []
    for lot in lots:
        messages += (message for at_lot, message in news if at_lot == lot)
        cars, devices = occupancy.total(tx, lot)
        messages.append(outbox.occupancy_message(lot, cars, devices, received_at))
    outbox.enqueue(tx, messages, received_at)


def _registered() -> Any:
    return and_(_CLIENTS.c.kind == DEVICE, _CLIENTS.c.deleted_at.is_(None))


def _records(conn: Connection, lot: str | None = None) -> dict[str, tuple[int | None, str]]:
    """Lot records: name -> (capacity, label)."""
    query = select(_LOTS.c.name, _LOTS.c.capacity, _LOTS.c.label)
    if lot is not None:
        query = query.where(_LOTS.c.name == lot)
    return {r.name: (r.capacity, r.label) for r in conn.execute(query)}


def _with_record(
    lot: dict[str, Any], record: tuple[int | None, str] | None, occ: occupancy.Occupancy
) -> dict[str, Any]:
    """Add what the total is made of (`baseline`, `since`, `flows`, `counted`, `drift`,
    `over_capacity`: ingest/occupancy.py) and, with a record, its `label`, and `capacity` and
    `free` when it gives a capacity."""
    capacity = record[0] if record is not None else None
    lot.update(occ.fields(capacity))
    if record is None:
        return lot
    capacity, lot["label"] = record
    if capacity is not None:
        lot["capacity"] = capacity
        # More cars than spaces (a miscount, cars parked in the aisles) is full, not negative.
        lot["free"] = max(0, capacity - lot["cars"])
    return lot


def list_lots(conn: Connection) -> list[dict[str, Any]]:
    """Every lot with a registered device, a record or a recount: `{"lot", "cars", "devices"}`
    and what the total is made of (see `_with_record`), plus `label` from its record and
    `capacity` and `free` when the record gives a capacity."""
    totals = occupancy.occupancy(sql.Tx.of(conn))
    records = _records(conn)
    for name in records.keys() - totals.keys():
        totals[name] = occupancy.Occupancy(name)
    return [
        _with_record(
            {"lot": name, "cars": totals[name].cars, "devices": totals[name].devices},
            records.get(name),
            totals[name],
        )
        for name in sorted(totals)
    ]


def lot_detail(conn: Connection, lot: str) -> dict[str, Any] | None:
    """`{"lot", "cars", "devices": [...]}` and what the total is made of (see `_with_record`;
    + `label`, `capacity`, `free` from its record): the lot's baseline, plus its gate boards'
    flows since then, plus its zone boards' current cars; each device's `cars` is its share
    (a gate board's in - out since the baseline), `online` by its own posting period, and
    `stale` when it is offline with a count that is held in the total (lots/liveness.py). None
    if `lot` has neither a registered device, a record nor a recount."""
    query = (
        select(
            _CLIENTS.c.client_id,
            _CLIENTS.c.enabled,
            _STATE.c.cars,
            _STATE.c.last_seq,
            _STATE.c.ts,
            _STATE.c.received_at,
            _STATE.c.last_seen_at,
            _STATE.c.health,
        )
        .select_from(_CLIENTS.outerjoin(_STATE, _STATE.c.device_id == _CLIENTS.c.client_id))
        .where(_registered(), _CLIENTS.c.lot == lot)
        .order_by(_CLIENTS.c.client_id)
    )
    occ = occupancy.occupancy(sql.Tx.of(conn), lot).get(lot)
    flows = {f["device_id"]: f for f in occ.flows} if occ is not None else {}
    devices = []
    rows = list(conn.execute(query))
    posted = liveness.post_readings(conn, [r.client_id for r in rows])
    now = time.time()
    for r in rows:
        flow = flows.get(r.client_id)
        up = liveness.online(
            bool(r.enabled), r.last_seen_at, dict(r.health or {}), now, posted.get(r.client_id, 1)
        )
        device = {
            "device_id": r.client_id,
            "kind": "gate" if flow is not None else "zone",
            "cars": flow["in"] - flow["out"] if flow is not None else r.cars or 0,
            "seq": r.last_seq,
            "ts": r.ts,
            "received_at": r.received_at,
            "online": up,
            "stale": not up and r.last_seq is not None,
        }
        devices.append(device)
    record = _records(conn, lot).get(lot)
    if occ is None and record is None:
        return None
    occ = occ or occupancy.Occupancy(lot)
    return _with_record({"lot": lot, "cars": occ.cars, "devices": devices}, record, occ)


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
            _READINGS.c.gate_in,
            _READINGS.c.gate_out,
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
        if r.gate_in is None
        else {
            "seq": r.seq,
            "in": r.gate_in,
            "out": r.gate_out,
            "ts": r.ts,
            "received_at": r.received_at,
            "lot": r.lot,
        }
        for r in conn.execute(query)
    ]
    next_since = readings[-1]["seq"] if len(readings) == limit else None
    return {"device_id": device_id, "readings": readings, "next_since_seq": next_since}
