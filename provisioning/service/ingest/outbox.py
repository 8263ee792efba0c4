"""The durable MQTT outbox (transactional outbox pattern) and the relay's reader of it.

Messages are written in the same transaction as the readings they report, so a committed reading
is always eventually published and a rolled-back one never is. The relay (`mqtt.py`) reads them
in id order and deletes each only after the broker's PUBACK: delivery is at least once
(MQTT 3.1.1 §4.3.2, QoS 1), never lost while the database survives.

Topics (one lot per deployment or many):
  parking/{lot}/devices/{device_id}/readings   one message per stored batch of a device, QoS 1
  parking/{lot}/occupancy                      the lot's total after each commit, QoS 1, retained

One message per batch, not per reading: a 500-reading post costs the broker, the relay and every
subscriber one QoS 1 exchange instead of 500, which is what lets fan-out keep up with ingestion
(broker-config/README.md, "Why one message per batch").
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import orjson
from sqlalchemy import Engine

from provisioning.service.ingest.schemas import GateReading, Reading
from provisioning.store import sql
from provisioning.store.ingest_sql import (
    OUTBOX_AFTER,
    OUTBOX_COLUMNS,
    OUTBOX_COUNT_UP_TO,
    OUTBOX_DEPTH,
    OUTBOX_OLDEST,
    RELAY_LOCK,
    outbox_delete_ranges,
)

log = logging.getLogger(__name__)

QOS = 1
# '/' would add topic levels, '+' and '#' are wildcards and U+0000 is forbidden in topic names
# (MQTT 3.1.1 §4.7.1, §1.5.3); '%' is escaped so the encoding is reversible.
_TOPIC_ESCAPES = str.maketrans({c: f"%{ord(c):02X}" for c in "%/+#\x00"})


@dataclass(frozen=True, slots=True)
class Message:
    """One queued MQTT message; `id` orders delivery."""

    id: int
    topic: str
    payload: str
    retain: bool


def topic_segment(name: str) -> str:
    """`name` as one MQTT topic level: wildcards, separators and NUL percent-encoded."""
    return name.translate(_TOPIC_ESCAPES)


def occupancy_topic(lot: str) -> str:
    return f"parking/{topic_segment(lot)}/occupancy"


def readings_topic(lot: str, device_id: str) -> str:
    return f"parking/{topic_segment(lot)}/devices/{topic_segment(device_id)}/readings"


def readings_message(
    lot: str,
    device_id: str,
    readings: Sequence[Reading],
    received_at: float,
    gates: Sequence[GateReading] = (),
) -> tuple[str, str, bool]:
    """(topic, payload, retain) for a device's newly stored readings, zone readings in the
    order posted, then gate readings: `{"lot", "device_id", "received_at", "readings":
    [{"seq", "cars", "ts"} or {"seq", "in", "out", "ts"}, ...]}`. orjson: this runs for up to
    500 readings per request, 3x faster than formatting by hand."""
    items: list[dict[str, object]] = [
        {"seq": seq, "cars": cars, "ts": ts} for seq, cars, ts in readings
    ]
    items += ({"seq": seq, "in": n_in, "out": n_out, "ts": ts} for seq, n_in, n_out, ts in gates)
    payload = orjson.dumps(
        {"lot": lot, "device_id": device_id, "received_at": received_at, "readings": items}
    )
    return readings_topic(lot, device_id), payload.decode(), False


def occupancy_message(
    lot: str, cars: int, devices: int, updated_at: float
) -> tuple[str, str, bool]:
    """The retained lot total: `{"lot", "cars", "devices", "updated_at"}`."""
    payload = orjson.dumps({"lot": lot, "cars": cars, "devices": devices, "updated_at": updated_at})
    return occupancy_topic(lot), payload.decode(), True


def enqueue(tx: sql.Tx, messages: Sequence[tuple[str, str, bool]], now: float) -> None:
    """Add `messages` in order, in the caller's transaction (one multi-row INSERT)."""
    if not messages:
        return
    params: list[object] = []
    for topic, payload, retain in messages:
        params += (topic, payload, retain, now)
    sql.insert_values(tx, "mqtt_outbox", OUTBOX_COLUMNS, params)


@dataclass(frozen=True, slots=True)
class Backlog:
    """What waits for the broker: `depth` messages, the oldest queued `oldest_age_s` ago."""

    depth: int
    oldest_age_s: float


def backlog(tx: sql.Tx, now: float) -> Backlog:
    """The outbox's depth and the age of its oldest message (lowest id, read by primary key)."""
    ((depth,),) = sql.run(tx, OUTBOX_DEPTH)
    oldest = sql.run(tx, OUTBOX_OLDEST)
    return Backlog(int(depth), max(0.0, now - float(oldest[0][0])) if oldest else 0.0)


# One relay per PostgreSQL database: a session-level advisory lock on the relay's own
# connection, so it is released the moment that connection (or its process) dies.
RELAY_LOCK_KEY = 0x7061726B6D717474  # "parkmqtt"
_DELETE_RUNS = 100  # id ranges per DELETE statement


class RelayReader:
    """The relay's side of the outbox, on one database connection it holds while it relays.

    `claim()` takes the relay role (PostgreSQL: `pg_try_advisory_lock` on this connection;
    SQLite serves one instance). `take(n)` returns the next messages in id order that are not
    out already; `acknowledged(ids)` deletes messages the broker acknowledged; `unsent(ids)`
    puts messages whose PUBACK never came back in line, to be read again in id order.

    Reading past a cursor is cheap but would skip a row whose id lies below it: on PostgreSQL an
    id is taken at INSERT but becomes visible at COMMIT, and SQLite reuses the ids of deleted
    rows. So after each read, one count of the rows up to the cursor is compared with the rows
    this relay has out; any extra row means a late arrival, and the read is redone from the
    start of the table so that everything still goes out in id order. The count runs after the
    read: a row that became visible before the read's newest row is then always seen.
    """

    def __init__(self, engine: Engine) -> None:
        self.postgresql = engine.dialect.name == "postgresql"
        self._conn = sql.SessionConnection(engine)
        self.errors = self._conn.errors
        self._held = False  # the role is held as long as this connection lives
        self._cursor = 0
        self._out: set[int] = set()  # read and not yet deleted: on the wire or acknowledged

    def claim(self) -> bool:
        """Take (or keep) the relay role; False while another instance holds it."""
        tx = self._conn.tx()
        if self._held or not self.postgresql:
            self._held = True
            return True
        ((held,),) = sql.run(tx, RELAY_LOCK, (RELAY_LOCK_KEY,))
        self._conn.commit()  # the lock is the session's; no transaction stays open
        self._held = bool(held)
        return self._held

    def take(self, limit: int) -> list[Message]:
        """Up to `limit` messages not out yet, oldest first."""
        tx = self._conn.tx()
        rows = sql.run(tx, OUTBOX_AFTER, (self._cursor, limit))
        ((below,),) = sql.run(tx, OUTBOX_COUNT_UP_TO, (self._cursor,))
        if int(below) > len(self._out):  # a late row below the cursor: read from the start
            rows = [
                r
                for r in sql.run(tx, OUTBOX_AFTER, (0, limit + len(self._out)))
                if r[0] not in self._out
            ]
            rows = rows[:limit]
        self._conn.commit()
        messages = [
            Message(int(i), topic, payload, bool(retain)) for i, topic, payload, retain in rows
        ]
        if messages:
            self._cursor = max(self._cursor, messages[-1].id)
            self._out.update(m.id for m in messages)
        return messages

    def acknowledged(self, ids: Sequence[int]) -> None:
        """Delete messages whose PUBACK arrived (in one transaction, as ranges of ids)."""
        if not ids:
            return
        tx = self._conn.tx()
        runs = _runs(ids)
        for at in range(0, len(runs), _DELETE_RUNS):
            chunk = runs[at : at + _DELETE_RUNS]
            sql.run(tx, outbox_delete_ranges(len(chunk)), [n for r in chunk for n in r])
        self._conn.commit()
        self._out.difference_update(ids)

    def unsent(self, ids: Sequence[int]) -> None:
        """Messages that went out without a PUBACK: read them again (the next `take`)."""
        self._out.difference_update(ids)

    def close(self) -> None:
        """Give up the connection, and with it the relay role; never raises."""
        self._held = False
        self._cursor = 0
        self._out.clear()
        try:
            self._conn.close()
        except self.errors:
            log.warning("MQTT relay: closing its database connection failed", exc_info=True)


def _runs(ids: Sequence[int]) -> list[tuple[int, int]]:
    """Sorted ids as (first, last) runs of consecutive integers: each range holds only them."""
    ordered = sorted(ids)
    runs: list[tuple[int, int]] = []
    first = last = ordered[0]
    for n in ordered[1:]:
        if n != last + 1:
            runs.append((first, last))
            first = n
        last = n
    runs.append((first, last))
    return runs
