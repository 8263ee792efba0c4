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
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import Connection, Row, desc, func, select

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
    refused: int = 0  # posts refused for the per-device readings rate (ingest/routes.py)
    faults: int = 0  # gate counter steps beyond what its lanes can pass (ingest/occupancy.py)
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
            "refused": self.refused,
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
    conn: Connection,
    ttl_s: int,
    lot: str | None = None,
    client_id: str | None = None,
    expiry: bool = True,
) -> list[Board]:
    """Live boards (of `lot`, or one), with their status; with `expiry`, each token's expiry
    (else None: `add_token_expiry` fills it for the page shown). Plain rows, not ORM objects:
    a 3,000-board fleet is read in milliseconds, not the better part of a second."""
    query = (
        select(
            Client.client_id,
            Client.name,
            Client.lot,
            Client.enabled,
            Client.issuer,
            DeviceState.cars,
            DeviceState.last_seen_at,
            DeviceState.health,
            DeviceState.refused,
            DeviceState.g_faults,
            DeviceState.g_seq,
            DeviceState.g_total_in,
            DeviceState.g_total_out,
            DeviceState.g_ref_in,
            DeviceState.g_ref_out,
            DeviceAgent.version,
        )
        .outerjoin(DeviceState, DeviceState.device_id == Client.client_id)
        .outerjoin(DeviceAgent, DeviceAgent.device_id == Client.client_id)
        .where(Client.kind == "device", Client.deleted_at.is_(None))
        .order_by(Client.name)
    )
    if lot is not None:
        query = query.where(Client.lot == lot)
    if client_id is not None:
        query = query.where(Client.client_id == client_id)
    rows = list(conn.execute(query))
    sizes = liveness.post_readings(conn, [row.client_id for row in rows])
    now = time.time()
    out = []
    for row in rows:
        health = dict(row.health or {})
        if row.version and "agent" not in health:  # the version the agent reports
            health["agent"] = row.version
        posted = sizes.get(row.client_id, 1)
        online, problems = board_status(row.enabled, row.last_seen_at, health, now, posted)
        refused, faults = int(row.refused or 0), int(row.g_faults or 0)
        if refused:
            problems.append(f"{refused} posts refused (readings rate)")
        if faults:
            problems.append(f"{faults} counter faults")
        out.append(
            Board(
                row.client_id,
                row.name,
                row.lot or "",
                row.enabled,
                row.cars,
                row.last_seen_at,
                health,
                None,
                online,
                problems,
                _gate(row),
                liveness.offline_after(health, posted),
                refused,
                faults,
                row.issuer,
            )
        )
    if expiry:
        add_token_expiry(conn, out, ttl_s)
    return out


def add_token_expiry(conn: Connection, shown: list[Board], ttl_s: int) -> None:
    """Fill in the token expiry of the boards `shown` (one query, for one page)."""
    expiry = _token_expiry(conn, [b.client_id for b in shown], ttl_s)
    for board in shown:
        board.token_expires_at = expiry.get(board.client_id)


def _gate(row: Row[Any]) -> Gate | None:
    """A gate board's counters (a gate board has no `cars` and a gate seq: ingest/occupancy.py)."""
    if row.cars is not None or row.g_seq is None:
        return None
    cars_in, cars_out = int(row.g_total_in or 0), int(row.g_total_out or 0)
    return Gate(
        cars_in, cars_out, cars_in - int(row.g_ref_in or 0), cars_out - int(row.g_ref_out or 0)
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


def overview(conn: Connection, ttl_s: int, params: Mapping[str, str]) -> Page:
    """A page of lots with their totals, last update, their boards whose count is stale
    (`stale`: names) and sparkline values over each lot's automatic range (`spark_range`: the
    last hour for a young lot, else the last day)."""
    updated = last_updates(conn)
    page = paged(store.list_lots(conn), params)
    stale: dict[str, list[str]] = {}
    for board in boards(conn, ttl_s, expiry=False):
        if board.stale:
            stale.setdefault(board.lot, []).append(board.name)
    now = time.time()
    for lot in page.items:
        lot["updated_at"] = updated.get(lot["lot"])
        lot["stale"] = stale.get(lot["lot"], [])
        current = lot["cars"] if lot["devices"] else None
        lot["spark_range"] = auto_range(conn, lot["lot"], now)
        span_s, step = RANGES[lot["spark_range"]]
        _times, lot["spark"] = series(conn, lot["lot"], span_s, step, current)
    return page


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


# Every list the dashboard shows is paged: `?page=N&per_page=M`, PER_PAGE by default and at most
# MAX_PER_PAGE, so no page grows with the fleet (a 3,000-board table is 1.4 MB of HTML).
PER_PAGE = 50
MAX_PER_PAGE = 200


@dataclass
class Page:
    """One page of a list, and the links to its neighbours (query strings)."""

    items: list[Any]
    number: int
    per_page: int
    total: int
    prev_query: str | None
    next_query: str | None

    @property
    def pages(self) -> int:
        """How many pages the list has (at least 1)."""
        return max(1, -(-self.total // self.per_page))


def _whole(text: str | None, default: int, low: int, high: int) -> int:
    # ASCII digits only ("²" and "٣" are digits to str.isdigit and int() alike).
    if text is None or not text.isascii() or not text.isdigit() or len(text) > 6:
        return default
    return min(max(int(text), low), high)


def paged(items: list[Any], params: Mapping[str, str]) -> Page:
    """The page of `items` that `params` (`page`, `per_page`) asks for; out-of-range values
    are clamped, so a link never breaks."""
    per_page = _whole(params.get("per_page"), PER_PAGE, 1, MAX_PER_PAGE)
    pages = max(1, -(-len(items) // per_page))
    number = _whole(params.get("page"), 1, 1, pages)
    start = (number - 1) * per_page

    def query(at: int) -> str:
        kept = {k: v for k, v in params.items() if k not in ("page", "per_page")}
        return urlencode({**kept, "page": at, "per_page": per_page})

    return Page(
        items[start : start + per_page],
        number,
        per_page,
        len(items),
        query(number - 1) if number > 1 else None,
        query(number + 1) if number < pages else None,
    )
