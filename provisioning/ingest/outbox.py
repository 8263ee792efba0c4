"""The durable MQTT outbox (transactional outbox pattern).

Messages are written in the same transaction as the readings they report, so a committed reading
is always eventually published and a rolled-back one never is. The publisher (`mqtt.py`) reads
them in id order and deletes each only after the broker's PUBACK: delivery is at least once
(MQTT 3.1.1 §4.3.2, QoS 1), never lost while the database survives.

Topics (one lot per deployment or many):
  parking/{lot}/devices/{device_id}/count   one message per stored reading, QoS 1
  parking/{lot}/occupancy                   the lot's total after each batch, QoS 1, retained
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, delete, func, select

from provisioning.ingest.schemas import Reading
from provisioning.store import sql
from provisioning.store.models import OutboxMessage

QOS = 1
_COLUMNS = ("topic", "payload", "retain", "created_at")
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


def reading_topic(lot: str, device_id: str) -> str:
    return f"parking/{topic_segment(lot)}/devices/{topic_segment(device_id)}/count"


def occupancy_topic(lot: str) -> str:
    return f"parking/{topic_segment(lot)}/occupancy"


def _number(value: float | None) -> str:
    # repr() of a finite float is valid JSON (RFC 8259 §6) and ~10x cheaper than json.dumps.
    return "null" if value is None else repr(value)


def reading_messages(
    lot: str, device_id: str, readings: Sequence[Reading], received_at: float
) -> list[tuple[str, str, bool]]:
    """(topic, payload, retain) for each reading: `{"lot", "device_id", "seq", "cars", "ts",
    "received_at"}`. Formatted by hand: this runs for up to 500 readings per request."""
    topic = reading_topic(lot, device_id)
    head = f'{{"lot":{json.dumps(lot)},"device_id":{json.dumps(device_id)},"seq":'
    tail = f',"received_at":{_number(received_at)}}}'
    return [
        (topic, f'{head}{seq},"cars":{cars},"ts":{_number(ts)}{tail}', False)
        for seq, cars, ts in readings
    ]


def occupancy_message(
    lot: str, cars: int, devices: int, updated_at: float
) -> tuple[str, str, bool]:
    """The retained lot total: `{"lot", "cars", "devices", "updated_at"}`."""
    payload = json.dumps({"lot": lot, "cars": cars, "devices": devices, "updated_at": updated_at})
    return occupancy_topic(lot), payload, True


def enqueue(tx: sql.Tx, messages: Sequence[tuple[str, str, bool]], now: float) -> None:
    """Add `messages` in order, in the caller's transaction (one multi-row INSERT)."""
    if not messages:
        return
    params: list[object] = []
    for topic, payload, retain in messages:
        params += (topic, payload, retain, now)
    template = sql.values_insert("mqtt_outbox", _COLUMNS, len(messages))
    sql.run(tx, template, params)


def fetch(conn: Connection, limit: int) -> list[Message]:
    """The oldest `limit` committed messages, in id order."""
    rows = conn.execute(
        select(OutboxMessage.id, OutboxMessage.topic, OutboxMessage.payload, OutboxMessage.retain)
        .order_by(OutboxMessage.id)
        .limit(limit)
    )
    return [Message(int(r.id), r.topic, r.payload, bool(r.retain)) for r in rows]


def remove(conn: Connection, ids: Sequence[int]) -> None:
    """Forget messages the broker has acknowledged."""
    if ids:
        conn.execute(delete(OutboxMessage).where(OutboxMessage.id.in_(ids)))


def pending(conn: Connection) -> int:
    """How many messages wait for the broker."""
    return int(conn.execute(select(func.count()).select_from(OutboxMessage)).scalar_one())
