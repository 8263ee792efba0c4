"""Lot occupancy over time: `GET /v1/lots/{lot}/history` and the rollup that makes it fast.

The occupancy of a lot at time t is the sum, over its boards, of each board's latest reading
before t (a reading's time is the board's `ts`, else the server's `received_at`). Answering
that from `readings` means one "latest row before t" per board per point: 30 days of a
100-board lot at one point an hour is 72,000 index seeks into 26M rows, about a second on
PostgreSQL (measured in tools/bench/history.py). So the ingest transaction also keeps, per
device and bucket, the last reading of that bucket (`occupancy_rollup`) at a few widths
(`RESOLUTIONS`). A history query with a step that is a multiple of a width reads, per device,
one row per bucket in the range plus the last row before it, and carries each board's value
forward in Python. Late readings replayed from a board's spool land in their own (old) bucket
and replace its row only if they are newer there, so history is right after an outage too.

Gate boards (lots/occupancy.py) follow the lot's rule: their rows hold their flows
(in - out) since the lot's baseline, and the baseline itself has rows under `BASELINE_ID`,
written by a recount (which also puts each gate board's flows back to 0 at that moment). A
negative sum is reported as 0, as the live total is. A gate reading older than the board's
newest adds nothing to its cumulative counters and writes no row.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection

from provisioning.service.ingest.schemas import Reading
from provisioning.store import sql
from provisioning.store.lots_sql import (
    ROLLUP_COLUMNS,
    ROLLUP_DEVICES,
    ROLLUP_LAST,
    ROLLUP_ROWS,
    ROLLUP_UPSERT_SUFFIX,
)

# Bucket widths kept, s. A step uses the widest that divides it (all are multiples of 60).
RESOLUTIONS: tuple[int, ...] = (60, 300, 3600)
MIN_STEP = RESOLUTIONS[0]
MAX_POINTS = 2000
# The rollup's row for a lot's baseline: no device has this id (device ids are `dev_...`).
BASELINE_ID = "~baseline"


class BadRange(ValueError):
    """A `from`/`to`/`step` the history endpoint refuses (422 with this message)."""


def record(
    tx: sql.Tx, lot: str, device_id: str, readings: Sequence[Reading], received_at: float
) -> None:
    """Fold newly stored `readings` into the rollup, in the ingest transaction."""
    latest: dict[tuple[int, int], tuple[float, int, int]] = {}
    for seq, cars, ts in readings:
        at = received_at if ts is None else ts
        for res in RESOLUTIONS:
            key = (res, int(at // res) * res)
            held = latest.get(key)
            # One row per key in the statement: PostgreSQL refuses to update a row twice.
            if held is None or (at, seq) > (held[0], held[1]):
                latest[key] = (at, seq, cars)
    params: list[object] = []
    for (res, bucket), (at, seq, cars) in latest.items():
        params += (lot, res, device_id, bucket, cars, at, seq)
    sql.insert_values(tx, "occupancy_rollup", ROLLUP_COLUMNS, params, ROLLUP_UPSERT_SUFFIX)


def parse_time(text: str, name: str) -> float:
    """Epoch seconds or ISO 8601 (UTC if it names no offset) -> epoch seconds."""
    try:
        value = float(text)
    except ValueError:
        try:
            when = datetime.fromisoformat(text)
        except ValueError:
            raise BadRange(f"{name} must be epoch seconds or an ISO 8601 time") from None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        value = when.timestamp()
    if not math.isfinite(value) or not 0 <= value < 2**40:
        raise BadRange(f"{name} is out of range")
    return value


def default_step(span: float) -> int:
    """The smallest of 1 min, 5 min, 15 min, 1 h, 3 h, 6 h, 1 d giving at most 720 points."""
    for step in (60, 300, 900, 3600, 10800, 21600, 86400):
        if span / step <= 720:
            return step
    return 86400 * math.ceil(span / 86400 / 720)


def points(start: float, end: float, step: int) -> list[int]:
    """The times the series is given at: multiples of `step` from `start` through `end`."""
    if step < MIN_STEP or step % MIN_STEP:
        raise BadRange(f"step must be a multiple of {MIN_STEP} s")
    if end <= start:
        raise BadRange("to must be after from")
    first = math.ceil(start / step) * step
    count = int((end - first) // step) + 1
    if count > MAX_POINTS:
        raise BadRange(f"more than {MAX_POINTS} points: use a larger step or a shorter range")
    return [first + k * step for k in range(max(count, 0))]


def lot_history(conn: Connection, lot: str, times: list[int], step: int) -> list[int | None]:
    """Occupancy of `lot` at each of `times` (multiples of `step`); None before any reading.

    A deleted board counts until it was deleted; a board moved to another lot counts here
    until the end of its last bucket here.
    """
    if not times:
        return []
    res = max(r for r in RESOLUTIONS if step % r == 0)
    tx = sql.Tx.of(conn)
    first, last = times[0], times[-1]
    total: list[int] = [0] * len(times)
    seen = [False] * len(times)
    # Every device that ever reported here, from the coarsest (smallest) rollup.
    for device_id, now_lot, deleted_at in sql.run(tx, ROLLUP_DEVICES, (lot, RESOLUTIONS[-1])):
        end = float("inf") if deleted_at is None else deleted_at
        if now_lot != lot and device_id != BASELINE_ID:
            ((moved,),) = sql.run(tx, ROLLUP_LAST, (lot, res, device_id))
            end = min(end, moved + res)
        rows = sql.run(
            tx, ROLLUP_ROWS, (lot, res, device_id, lot, res, device_id, first, first, last)
        )
        # Sweep: at time t the device shows its last bucket that ended by t (bucket < t).
        i, value = 0, None
        for k, t in enumerate(times):
            while i < len(rows) and rows[i][0] < t:
                value = rows[i][1]
                i += 1
            if value is not None and t <= end:
                total[k] += value
                seen[k] = True
    return [max(0, cars) if any_seen else None for cars, any_seen in zip(total, seen, strict=True)]


def history_response(
    conn: Connection, lot: str, start: float, end: float, step: int
) -> dict[str, Any]:
    """The history endpoint's body: `{"lot", "from", "to", "step", "t": [...], "cars": [...]}`."""
    times = points(start, end, step)
    return {
        "lot": lot,
        "from": start,
        "to": end,
        "step": step,
        "t": times,
        "cars": lot_history(conn, lot, times, step),
    }
