"""A lot's occupancy from its two kinds of board, and the operator's recount.

A zone board (a camera over a level, a both-ways gate) reports the cars it sees; a gate board
reports cumulative counters `in`/`out` since it was installed (device/gate.py), 32-bit and
wrapping. A lot's cars = its baseline (the last recount, 0 before any) + the sum over its gate
boards of (in - out) since the baseline + the sum of its zone boards' current `cars`. Below 0
is reported as 0 with `drift` set; above capacity is reported as it is, with `over_capacity`.

Each gate board's state is kept in `device_state` on the ingest path, so totals never scan
`readings`: the newest reading's seq and raw counters, and the flows since install summed
wrap-safe. Cumulative counters make order irrelevant: a reading older than the newest (a late
batch replayed from a spool) adds nothing the newest did not already count, so it is stored but
changes no total. A counter that goes backwards (by more than half the 32-bit range: a wiped
flash, a swapped board) starts a new series from that reading instead of subtracting thousands
of cars. A recount stores the baseline and each gate board's flows at that moment (`g_ref_*`);
the boards' counters are never reset.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from provisioning.service.ingest import seqrule
from provisioning.service.ingest.schemas import GateReading, Reading
from provisioning.service.lots import history
from provisioning.service.lots.history import BASELINE_ID
from provisioning.store import sql
from provisioning.store.lots_sql import (
    BASELINE_UPSERT,
    BASELINES,
    DEVICES,
    GATE_STATE,
    GATE_UPDATE,
    LOCK_LOT,
    LOT_GATES,
    RESET_REFS,
    TOTAL,
)

WRAP = 2**32
_HALF = 2**31

# A lane's physical bound (finding: a counter jumping by 2**31 in one post): each counter may
# grow by at most GATE_RATE cars a second of server time since the board's previous post, plus
# GATE_ALLOWANCE; unspent credit carries over for at most GATE_CARRY_S (so a board's spool
# flushed after an outage of up to that long still counts). A step beyond its credit is a
# counter fault (a reset to garbage, a torn record, a forged post): counted like a counter that
# went backwards, as a new series from that reading, and reported (`faults`).
GATE_RATE = 1.0  # cars a second per counter (one lane each way): above any real lane
GATE_ALLOWANCE = 100
GATE_CARRY_S = 3600.0
GATE_CREDIT_MAX = GATE_RATE * GATE_CARRY_S + GATE_ALLOWANCE


@dataclass(slots=True)
class Occupancy:
    """One lot's total and what it is made of."""

    lot: str
    baseline: int = 0
    since: float | None = None
    zones: int = 0  # the zone boards' current cars
    devices: int = 0
    flows: list[dict[str, Any]] = field(default_factory=list)  # per gate board since baseline

    @property
    def counted(self) -> int:
        """The sum as counted, negative if exits outran entries since the baseline."""
        flows: int = sum(f["in"] - f["out"] for f in self.flows)
        return self.baseline + self.zones + flows

    @property
    def cars(self) -> int:
        """What is reported: never below 0."""
        return max(0, self.counted)

    def fields(self, capacity: int | None) -> dict[str, Any]:
        """The keys the lot endpoints add: baseline, since, flows, drift, over_capacity."""
        return {
            "baseline": self.baseline,
            "since": self.since,
            "flows": self.flows,
            "counted": self.counted,
            "drift": self.counted < 0,
            "over_capacity": capacity is not None and self.counted > capacity,
        }


def credit(held: float | None, at: float | None, now: float) -> float:
    """A counter's credit at `now`: what it held at `at`, plus GATE_RATE a second since, at
    most GATE_CREDIT_MAX (a board's first post starts with the most)."""
    if held is None or at is None:
        return GATE_CREDIT_MAX
    return min(GATE_CREDIT_MAX, held + GATE_RATE * max(0.0, now - at))


def advance(
    tx: sql.Tx, device_id: str, gates: Sequence[GateReading], now: float
) -> tuple[list[Reading], int]:
    """Fold newly stored gate readings into the board's state (after the state upsert, which
    holds the row lock on PostgreSQL); returns the readings that moved it forward as (seq,
    in - out since the lot's baseline, ts) for the history rollup, and how many new series
    began (counters that went backwards, or faults: steps beyond the lane's credit)."""
    ((held, raw_in, raw_out, total_in, total_out, ref_in, ref_out, series, *rest),) = sql.run(
        tx, GATE_STATE, (device_id,)
    )
    suspect, credit_in, credit_out, credit_at, faults = rest
    total_in, total_out, series = total_in or 0, total_out or 0, series or 0
    ref_in, ref_out, faults = ref_in or 0, ref_out or 0, faults or 0
    credit_in, credit_out = credit(credit_in, credit_at, now), credit(credit_out, credit_at, now)
    by_seq = {g[0]: g for g in gates}
    taken, _held, suspect = seqrule.track(sorted(by_seq), held, suspect)
    moved: list[Reading] = []
    breaks = faulted = 0
    for seq in taken:
        _seq, n_in, n_out, ts = by_seq[seq]
        if held is None:
            # The first reading: counters since the board was installed all count.
            d_in, d_out, series = n_in, n_out, 1
        else:
            d_in, d_out = (n_in - raw_in) % WRAP, (n_out - raw_out) % WRAP
            if d_in >= _HALF or d_out >= _HALF:
                # Backwards (a wiped flash, a swapped board): a new series from here.
                d_in = d_out = 0
                series += 1
                breaks += 1
        if d_in > credit_in or d_out > credit_out:
            # More cars than the lanes can pass since the last post: a fault, not traffic.
            d_in = d_out = 0
            series += 1 if held is not None else 0
            breaks += 1
            faulted += 1
        credit_in, credit_out = credit_in - d_in, credit_out - d_out
        held, raw_in, raw_out = seq, n_in, n_out
        total_in += d_in
        total_out += d_out
        moved.append((seq, (total_in - ref_in) - (total_out - ref_out), ts))
    sql.run(
        tx,
        GATE_UPDATE,
        (
            *(held, raw_in, raw_out, total_in, total_out, series, breaks > 0, now, suspect),
            *(credit_in, credit_out, now, faults + faulted, faulted > 0, now, device_id),
        ),
    )
    return moved, breaks


def occupancy(tx: sql.Tx, lot: str | None = None) -> dict[str, Occupancy]:
    """Every lot with a registered device or a baseline (or just `lot`) -> its `Occupancy`."""
    devices = DEVICES + (" AND c.lot = ?" if lot is not None else "") + " ORDER BY c.client_id"
    params = (lot,) if lot is not None else ()
    lots: dict[str, Occupancy] = {}
    for name, cars, since in sql.run(
        tx, BASELINES + (" WHERE lot = ?" if lot is not None else ""), params
    ):
        lots[name] = Occupancy(name, int(cars), float(since))
    for row in sql.run(tx, devices, params):
        device_id, name, cars, g_seq, t_in, t_out, r_in, r_out, series, series_at, *fault = row
        faults, fault_at = fault
        occ = lots.get(name) or lots.setdefault(name, Occupancy(name))
        occ.devices += 1
        if cars is None and g_seq is not None:
            occ.flows.append(
                {
                    "device_id": device_id,
                    "in": int(t_in) - int(r_in or 0),
                    "out": int(t_out) - int(r_out or 0),
                    "series": int(series or 1),
                    "series_since": series_at,
                    "faults": int(faults or 0),
                    "fault_at": fault_at,
                }
            )
        else:
            occ.zones += int(cars or 0)
    return lots


def total(tx: sql.Tx, lot: str) -> tuple[int, int]:
    """`lot`'s (cars, devices) as `occupancy(tx, lot)` reports them, summed by the database."""
    ((devices, flows, baseline),) = sql.run(tx, TOTAL, (lot, lot))
    return max(0, int(baseline or 0) + int(flows or 0)), int(devices)


def recount(tx: sql.Tx, lot: str, cars: int, actor: str, now: float) -> dict[str, list[int]]:
    """Set `lot`'s baseline to `cars` from `now`: each gate board's flows count from here. Its
    counters are not touched; returns them (device -> [in, out], raw) for the audit event."""
    if tx.postgresql:
        # The ingest path takes this lock per lot too: no batch lands between the two updates.
        sql.run(tx, LOCK_LOT, (lot,))
    sql.run(tx, BASELINE_UPSERT, (lot, cars, now, actor))
    sql.run(tx, RESET_REFS, (lot,))
    rows = sql.run(tx, LOT_GATES, (lot,))
    # History from here: the new baseline, and each gate board's flows back to 0.
    history.record(tx, lot, BASELINE_ID, [(0, cars, now)], now)
    for device_id, seq, _in, _out in rows:
        history.record(tx, lot, device_id, [(int(seq), 0, now)], now)
    return {device_id: [int(g_in), int(g_out)] for device_id, _seq, g_in, g_out in rows}
