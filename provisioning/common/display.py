"""How the dashboard writes times, sizes and a board's health: the same units everywhere
(the boards table, a board's page), never a raw key dump."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any


def utc(ts: float | None) -> str:
    """An absolute time; app.js turns those in <time data-ts> into "3 s ago" and keeps them
    ticking (without JavaScript the page shows when, which is never wrong later)."""
    if ts is None:
        return "never"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def duration(seconds: float) -> str:
    """`45 s`, `12 min`, `5 h 20 min`, `3 d 4 h`: two units at most, the larger first."""
    left = int(seconds)
    if left < 60:
        return f"{left} s"
    if left < 3600:
        return f"{left // 60} min"
    if left < 86400:
        hours, minutes = divmod(left // 60, 60)
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(left // 3600, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def kb(size: int) -> str:
    """Bytes as whole KB (1024), the unit of an ESP32's heap figures."""
    return f"{size // 1024} KB"


def until(ts: float | None) -> str:
    """How long until `ts`: `in 3 min`, or `expired`."""
    if ts is None:
        return "-"
    left = ts - time.time()
    if left <= 0:
        return "expired"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if left >= size:
            return f"in {int(left // size)} {unit}"
    return f"in {int(left)} s"


# A board's health fields in the order and words of the boards table: (key, label, unit).
_HEALTH: tuple[tuple[str, str, str], ...] = (
    ("agent", "Agent", ""),
    ("interval_s", "Reads every", "duration"),
    ("uptime_s", "Uptime", "duration"),
    ("reset_cause", "Last reset", ""),
    ("rssi", "WiFi signal", "dBm"),
    ("rssi_min", "Weakest signal", "dBm"),
    ("free_heap", "Free heap", "kb"),
    ("heap_min", "Lowest free heap", "kb"),
    ("heap_block", "Largest free block", "kb"),
    ("spool_depth", "Readings waiting", ""),
    ("dropped", "Readings dropped", ""),
    ("wifi_drops", "WiFi drops", ""),
    ("token_fails", "Token failures", ""),
    ("post_fails", "Failed posts", ""),
)


def health_rows(health: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, text) for each health field the board reported, known fields first."""
    rows = []
    for key, label, unit in _HEALTH:
        value = health.get(key)
        if value is None:
            continue
        if unit == "duration" and isinstance(value, int):
            text = duration(value)
        elif unit == "kb" and isinstance(value, int):
            text = kb(value)
        elif unit == "dBm":
            text = f"{value} dBm"
        else:
            text = str(value)
        rows.append((label, text))
    known = {key for key, _label, _unit in _HEALTH}
    rows += [(key, str(health[key])) for key in sorted(health) if key not in known]
    return rows
