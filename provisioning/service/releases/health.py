"""Per-release health over a window: crash-free hours and the share of boards online.

The window (the last `window_s` before now) is cut into steps of `step_s`, the last one ending
now. For a board and a release:

- a *board-hour on the release* (board-step, counted in hours) is a step in which the board
  sent a health report (its vitals) or a crash report while it ran the release: a board that
  is heard from is up. The step should be at least the boards' `health_every_s`.
- a *crashed* board-step is one in which the board reported a crash of the release (the crash
  report names the version that crashed; one report may cover several crashes: it is still one
  crashed step);
- *crash-free hours* = board-hours on the release without a crash; the *crash-free rate* =
  crash-free hours / board-hours on the release;
- the board was *expected* on the release from its first step heard on it until the step
  before it was first heard on another one (or until the end of the window): a board that
  falls silent after an update stays expected. The *online share* = board-hours on the
  release / expected board-hours.

Rows per release, per release and lot, and per release for the canary group (the first phase
of a rollout, by default the newest) against the rest of the fleet; `series` is the crash-free
rate and the online share of those two groups per step, for the dashboard's chart.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from provisioning.store.models import Client, CrashReport, Rollout, VitalsSample

MAX_STEPS = 1000
Key = tuple[str, str | None]  # (device_id, version)


@dataclass
class Tally:
    """One board on one release: the steps it was up, crashed, and expected on it."""

    up: set[int] = field(default_factory=set)
    crashed: set[int] = field(default_factory=set)
    expected: set[int] = field(default_factory=set)
    crashes: int = 0  # crashes reported (a report's count)


def tally(
    samples: Iterable[tuple[str, float, str | None]],
    crashes: Iterable[tuple[str, float, str | None, int]],
    since: float,
    steps: int,
    step_s: float,
) -> dict[Key, Tally]:
    """Per (board, release): its steps up, crashed and expected (see the module's text), from
    the health reports `samples` (device_id, at, version) and crash reports `crashes`
    (device_id, at, version that crashed, count) in the window."""

    def step(at: float) -> int:
        return min(max(int((at - since) // step_s), 0), steps - 1)

    out: dict[Key, Tally] = defaultdict(Tally)
    heard: dict[str, list[tuple[float, str | None]]] = defaultdict(list)
    for device_id, at, version in samples:
        heard[device_id].append((at, version))
        out[device_id, version].up.add(step(at))
    for device_id, at, version, count in crashes:
        heard[device_id].append((at, version))
        t = out[device_id, version]
        t.up.add(step(at))
        t.crashed.add(step(at))
        t.crashes += count
    for device_id, events in heard.items():
        events.sort(key=lambda e: e[0])
        first = 0
        for i in range(1, len(events) + 1):
            if i < len(events) and events[i][1] == events[first][1]:
                continue
            end = step(events[i][0]) - 1 if i < len(events) else steps - 1
            t = out[device_id, events[first][1]]
            t.expected.update(range(step(events[first][0]), end + 1))
            first = i
    for t in out.values():
        t.expected |= t.up
    return dict(out)


def summary(tallies: Iterable[Tally], step_s: float) -> dict[str, Any]:
    """Board-hours, crash-free hours and rate, online share and crashes of some tallies."""
    boards = up = crashed = expected = crashes = 0
    for t in tallies:
        boards += 1
        up += len(t.up)
        crashed += len(t.crashed)
        expected += len(t.expected)
        crashes += t.crashes
    hours = step_s / 3600
    return {
        "boards": boards,
        "board_hours": round(up * hours, 3),
        "crash_free_hours": round((up - crashed) * hours, 3),
        "crash_free_rate": round((up - crashed) / up, 4) if up else None,
        "online_share": round(up / expected, 4) if expected else None,
        "crashes": crashes,
    }


def _canaries(db: Session, rollout_id: int | None) -> tuple[int | None, set[str]]:
    query = select(Rollout).order_by(Rollout.id.desc()).limit(1)
    if rollout_id is not None:
        query = select(Rollout).where(Rollout.id == rollout_id)
    r = db.scalars(query).first()
    if r is None:
        return None, set()
    first = r.phases[0] if r.phases else len(r.canaries)
    return r.id, set(r.devices[:first])


def _series(
    tallies: dict[Key, Tally], groups: dict[str, str], steps: int
) -> dict[str, dict[str, list[float | None]]]:
    up: dict[str, list[int]] = {g: [0] * steps for g in ("canary", "rest")}
    crashed = {g: [0] * steps for g in up}
    expected = {g: [0] * steps for g in up}
    for (device_id, _version), t in tallies.items():
        g = groups[device_id]
        for s in t.up:
            up[g][s] += 1
        for s in t.crashed:
            crashed[g][s] += 1
        for s in t.expected:
            expected[g][s] += 1
    return {
        g: {
            "crash_free_rate": [
                (up[g][s] - crashed[g][s]) / up[g][s] if up[g][s] else None for s in range(steps)
            ],
            "online_share": [
                up[g][s] / expected[g][s] if expected[g][s] else None for s in range(steps)
            ],
        }
        for g in up
    }


def report(
    db: Session, now: float, window_s: float, step_s: float, lot: str | None, rollout_id: int | None
) -> dict[str, Any]:
    """The per-release health document of `GET /admin/release-health`."""
    steps = max(1, math.ceil(window_s / step_s))
    since = now - steps * step_s
    devices = select(Client.client_id, Client.lot).where(Client.kind == "device")
    lots: dict[str, str | None] = {d: n for d, n in db.execute(devices).all()}
    samples = db.execute(
        select(VitalsSample.device_id, VitalsSample.at, VitalsSample.version).where(
            VitalsSample.at >= since, VitalsSample.at <= now
        )
    ).all()
    crashes = db.execute(
        select(
            CrashReport.device_id,
            CrashReport.at,
            func.coalesce(CrashReport.version, CrashReport.running),
            CrashReport.count,
        ).where(CrashReport.at >= since, CrashReport.at <= now)
    ).all()
    if lot is not None:
        samples = [s for s in samples if lots.get(s[0]) == lot]
        crashes = [c for c in crashes if lots.get(c[0]) == lot]
    tallies = tally(
        [(d, a, v) for d, a, v in samples], [(d, a, v, n) for d, a, v, n in crashes],
        since, steps, step_s,
    )  # fmt: skip
    chosen, canaries = _canaries(db, rollout_id)
    groups = {d: ("canary" if d in canaries else "rest") for d, _v in tallies}
    by: dict[str, dict[tuple[str | None, ...], list[Tally]]] = {
        "release": defaultdict(list),
        "lot": defaultdict(list),
        "group": defaultdict(list),
    }
    for (device_id, version), t in tallies.items():
        by["release"][(version,)].append(t)
        by["lot"][(version, lots.get(device_id))].append(t)
        by["group"][(version, groups[device_id])].append(t)
    names = {"release": ("version",), "lot": ("version", "lot"), "group": ("version", "group")}

    def rows(kind: str) -> list[dict[str, Any]]:
        return [
            {**dict(zip(names[kind], key, strict=True)), **summary(ts, step_s)}
            for key, ts in sorted(by[kind].items(), key=lambda kv: [str(k) for k in kv[0]])
        ]

    return {
        "since": since,
        "until": now,
        "step_s": step_s,
        "lot": lot,
        "rollout": chosen,
        "releases": rows("release"),
        "lots": rows("lot"),
        "groups": rows("group"),
        "series": _series(tallies, groups, steps),
    }
