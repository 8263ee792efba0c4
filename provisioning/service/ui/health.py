"""The dashboard's health pages: a board's last crash and vitals over time, and the per-release
health table with its canary-against-the-rest chart. Numbers in, small SVG paths out
(ui/chart.py); every text a board sent is escaped by the templates."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from provisioning.service.ingest import vitals
from provisioning.service.releases import health, rollout
from provisioning.service.ui import chart
from provisioning.store.models import Rollout

VITALS_SPAN_S = 86400
ROLLOUTS = 5  # the newest, on the release health page
RANGES = {"1h": (3600, 300), "24h": (86400, 3600), "7d": (7 * 86400, 6 * 3600)}


def _spark(values: list[int | None]) -> dict[str, Any]:
    """A sparkline of `values` scaled between their own low and high (RSSI is negative)."""
    known = [v for v in values if v is not None]
    if not known:
        return {"path": "", "low": None, "high": None, "last": None}
    low, high = min(known), max(known)
    shifted = [None if v is None else v - low for v in values]
    return {
        "path": chart.sparkline(shifted, high - low),
        "low": low,
        "high": high,
        "last": known[-1],
    }


def board(db: Session, device_id: str) -> dict[str, Any]:
    """The board page's `last_crash` and `vitals` (one sparkline per charted vital over the
    last day)."""
    samples = vitals.series(db, device_id, time.time() - VITALS_SPAN_S)
    charts = []
    for name, label, unit in vitals.CHARTED:
        values = [s.get(name) for s in samples]
        drawn = _spark([v if isinstance(v, int) else None for v in values])
        if drawn["last"] is not None:
            charts.append({"name": name, "label": label, "unit": unit, **drawn})
    return {
        "last_crash": vitals.last_crash(db, device_id),
        "vitals": samples[-1] if samples else None,
        "vitals_charts": charts,
        "vitals_count": len(samples),
    }


def releases(db: Session, span: str) -> dict[str, Any]:
    """The release health page: the newest rollouts (state, phase, the reason of a pause, the
    phase's health against the old boards'), the report of `span` and the canary-against-the-
    rest chart (crash-free rate and online share per step, in percent)."""
    window_s, step_s = RANGES[span]
    doc = health.report(db, time.time(), window_s, step_s, None, None)
    newest = db.scalars(select(Rollout).order_by(Rollout.id.desc()).limit(ROLLOUTS)).all()
    doc["rollouts"] = [rollout.view(db, r) for r in newest]
    lines = {}
    for group, series in doc["series"].items():
        for metric, values in series.items():
            percent = [None if v is None else round(v * 100) for v in values]
            lines[f"{group}_{metric}"] = chart.sparkline(percent, 100, width=360, height=60)
    return {**doc, "lines": lines}
