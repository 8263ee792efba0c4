"""What the dashboard's pages show, read from the store (pages are read with `counts:read`).

Board status rules, in one place:
- online: heard from within two of its own posting periods plus 15 s (service/lots/liveness.py,
  shared with the lot API's `online` and `stale`).
- stale: an offline board's last count. It stays in its lot's total (a dead sensor does not
  empty the spaces it watched, and a gate board's flows are the cars that came in through it:
  leaving them out would send the total down by every car it ever counted); the dashboard marks
  it stale, so the total and the MQTT and API totals stay one number.
- unwell: disabled, at least `SPOOL_WAITING` readings still in its flash spool after its post
  (a healthy, uploading board reports 0; one more may be taken while a post is in flight),
  readings it had to drop, weak WiFi, little free heap, or a last reset that was not a power-on
  or a deliberate one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, desc, func, select
from sqlalchemy.orm import Session

from provisioning.service.ingest import store
from provisioning.service.lots import history, liveness
from provisioning.store.models import (
    AuditEvent,
    Client,
    DeviceAgent,
    DeviceState,
    OccupancyRollup,
    Reading,
)

SPOOL_WAITING = 3
WEAK_RSSI_DBM = -80
LOW_HEAP_BYTES = 16 * 1024
# device/health.py's names; watchdog, brownout and unknown codes are worth a look.
_QUIET_RESETS = frozenset({"power_on", "soft", "hard", "deepsleep"})
# Each range's span and step (s); "auto" picks the smallest one that holds the lot's history.
RANGES = {
    "1h": (3600, 60),
    "24h": (86400, 300),
    "7d": (7 * 86400, 3600),
    "30d": (30 * 86400, 3 * 3600),
}
AUTO_RANGES = ("1h", "24h")


@dataclass
class Gate:
    """A gate board's counters: cars in and out since it was installed, and since the lot's
    last recount (the lot event's `flows`: ingest/occupancy.py), whose difference is its share
    of the lot's total."""

    cars_in: int
    cars_out: int
    in_since: int
    out_since: int

    @property
    def share(self) -> int:
        return self.in_since - self.out_since


@dataclass
class Board:
    client_id: str
    name: str
    lot: str
    enabled: bool
    cars: int | None
    last_seen_at: float | None
    health: dict[str, Any]
    token_expires_at: float | None
    online: bool
    problems: list[str]
    gate: Gate | None = None
    offline_after_s: float = 0.0
    issuer: str | None = None  # the external authorization server; None: the built-in one

    @property
    def stale(self) -> bool:
        """An offline board's count: the last one known, still in its lot's total."""
        return not self.online and (self.cars is not None or self.gate is not None)

    def sort_key(self, column: str) -> Any:
        value: Any = {
            "name": self.name.lower(),
            "lot": self.lot,
            "status": (self.online, not self.problems),
            "cars": self.count if self.count is not None else -(2**62),
            "seen": self.last_seen_at or 0.0,
        }.get(column, self.name.lower())
        if column in {"rssi", "uptime_s", "free_heap", "spool_depth", "dropped"}:
            raw = self.health.get(column)
            value = raw if isinstance(raw, int) else -(2**62)
        return value

    @property
    def count(self) -> int | None:
        """What the board adds to its lot: a zone board's cars, a gate board's share."""
        return self.gate.share if self.gate is not None else self.cars


def board_status(
    enabled: bool,
    last_seen_at: float | None,
    health: dict[str, Any],
    now: float,
    post_readings: int = 1,
) -> tuple[bool, list[str]]:
    """(online, problems) by the rules in the module docstring."""
    online = liveness.online(enabled, last_seen_at, health, now, post_readings)
    problems = []
    if not enabled:
        problems.append("disabled")
    if isinstance(health.get("spool_depth"), int) and health["spool_depth"] >= SPOOL_WAITING:
        problems.append(f"{health['spool_depth']} readings waiting in spool")
    if isinstance(health.get("dropped"), int) and health["dropped"] > 0:
        problems.append(f"dropped {health['dropped']} readings")
    if isinstance(health.get("rssi"), int) and health["rssi"] < WEAK_RSSI_DBM:
        problems.append(f"weak WiFi ({health['rssi']} dBm)")
    if isinstance(health.get("free_heap"), int) and health["free_heap"] < LOW_HEAP_BYTES:
        problems.append(f"low free heap ({health['free_heap'] // 1024} KB)")
    cause = health.get("reset_cause")
    if cause is not None and str(cause) not in _QUIET_RESETS:
        problems.append(f"reset by {cause}")
    return online, problems


def _token_expiry(conn: Connection, ids: list[str], ttl_s: int) -> dict[str, float]:
    """Each device's newest token expiry, from the issuance audit (tokens are never stored)."""
    if not ids:
        return {}
    rows = conn.execute(
        select(AuditEvent.target, func.max(AuditEvent.at))
        .where(AuditEvent.target.in_(ids), AuditEvent.action == "token.issue")
        .group_by(AuditEvent.target)
    )
    return {str(target): at + ttl_s for target, at in rows}


def boards(
    conn: Connection, ttl_s: int, lot: str | None = None, client_id: str | None = None
) -> list[Board]:
    """Live boards (of `lot`, or one), with their status."""
    query = (
        select(Client, DeviceState, DeviceAgent.version)
        .outerjoin(DeviceState, DeviceState.device_id == Client.client_id)
        .outerjoin(DeviceAgent, DeviceAgent.device_id == Client.client_id)
        .where(Client.kind == "device", Client.deleted_at.is_(None))
        .order_by(Client.name)
    )
    if lot is not None:
        query = query.where(Client.lot == lot)
    if client_id is not None:
        query = query.where(Client.client_id == client_id)
    with Session(bind=conn) as session:
        rows = [(row[0], row[1], row[2]) for row in session.execute(query)]
    ids = [c.client_id for c, _, _ in rows]
    expiry = _token_expiry(conn, ids, ttl_s)
    sizes = liveness.post_readings(conn, ids)
    now = time.time()
    out = []
    for client, state, version in rows:
        health = dict(state.health or {}) if state is not None else {}
        if version and "agent" not in health:  # the version the agent reports
            health["agent"] = version
        seen = state.last_seen_at if state is not None else None
        posted = sizes.get(client.client_id, 1)
        online, problems = board_status(client.enabled, seen, health, now, posted)
        out.append(
            Board(
                client.client_id,
                client.name,
                client.lot or "",
                client.enabled,
                state.cars if state is not None else None,
                seen,
                health,
                expiry.get(client.client_id),
                online,
                problems,
                _gate(state),
                liveness.offline_after(health, posted),
                client.issuer,
            )
        )
    return out


def _gate(state: DeviceState | None) -> Gate | None:
    """A gate board's counters (a gate board has no `cars` and a gate seq: ingest/occupancy.py)."""
    if state is None or state.cars is not None or state.g_seq is None:
        return None
    cars_in, cars_out = int(state.g_total_in or 0), int(state.g_total_out or 0)
    return Gate(
        cars_in, cars_out, cars_in - int(state.g_ref_in or 0), cars_out - int(state.g_ref_out or 0)
    )


def last_updates(conn: Connection) -> dict[str, float]:
    """Each lot's newest reading time (server clock)."""
    rows = conn.execute(
        select(Client.lot, func.max(DeviceState.received_at))
        .join(DeviceState, DeviceState.device_id == Client.client_id)
        .where(Client.kind == "device", Client.deleted_at.is_(None))
        .group_by(Client.lot)
    )
    return {str(lot): at for lot, at in rows if at is not None and lot is not None}


def auto_range(conn: Connection, lot: str, now: float) -> str:
    """The smallest range that holds all of the lot's history, at most 24 h (a young lot's
    minutes would be a sliver at the edge of a day; an old lot opens on its last day)."""
    first = conn.execute(
        select(func.min(OccupancyRollup.at)).where(
            OccupancyRollup.lot == lot, OccupancyRollup.res == history.RESOLUTIONS[-1]
        )
    ).scalar_one_or_none()
    age = now - float(first) if first is not None else 0.0
    for name in AUTO_RANGES:
        if age <= RANGES[name][0]:
            return name
    return AUTO_RANGES[-1]


def series(
    conn: Connection, lot: str, span_s: int, step: int, current: int | None
) -> tuple[list[int], list[int | None]]:
    """The lot's occupancy over the last `span_s`, every `step` seconds, ending with
    `current` (the lot's total now) so the line reaches the present."""
    end = time.time()
    times = history.points(end - span_s, end, step)
    values = history.lot_history(conn, lot, times, step)
    if current is not None:
        times.append(int(end))
        values.append(current)
    return times, values


def overview(conn: Connection, ttl_s: int) -> list[dict[str, Any]]:
    """Every lot with its totals, last update, its boards whose count is stale (`stale`: names)
    and sparkline values over its automatic range (`spark_range`: the last hour for a young
    lot, else the last day)."""
    updated = last_updates(conn)
    lots = store.list_lots(conn)
    stale: dict[str, list[str]] = {}
    for board in boards(conn, ttl_s):
        if board.stale:
            stale.setdefault(board.lot, []).append(board.name)
    now = time.time()
    for lot in lots:
        lot["updated_at"] = updated.get(lot["lot"])
        lot["stale"] = stale.get(lot["lot"], [])
        current = lot["cars"] if lot["devices"] else None
        lot["spark_range"] = auto_range(conn, lot["lot"], now)
        span_s, step = RANGES[lot["spark_range"]]
        _times, lot["spark"] = series(conn, lot["lot"], span_s, step, current)
    return lots


def recent_readings(conn: Connection, client_id: str, limit: int = 20) -> list[Any]:
    """The board's newest readings, newest first."""
    return list(
        conn.execute(
            select(
                Reading.seq,
                Reading.cars,
                Reading.gate_in,
                Reading.gate_out,
                Reading.ts,
                Reading.received_at,
            )
            .where(Reading.device_id == client_id)
            .order_by(desc(Reading.seq))
            .limit(limit)
        )
    )


def audit_entries(conn: Connection, client_id: str, limit: int = 20) -> list[Any]:
    """Admin actions about the board (token issuance left out: it is in the token column),
    each with its actor's name (`actor_name`, None for an actor that is not a client)."""
    return list(
        conn.execute(
            select(
                AuditEvent.at,
                AuditEvent.actor,
                Client.name.label("actor_name"),
                AuditEvent.action,
                AuditEvent.detail,
            )
            .outerjoin(Client, Client.client_id == AuditEvent.actor)
            .where(AuditEvent.target == client_id, AuditEvent.action != "token.issue")
            .order_by(desc(AuditEvent.id))
            .limit(limit)
        )
    )
