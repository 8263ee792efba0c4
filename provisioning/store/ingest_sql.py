"""SQL text of the ingestion path (readings, device state, agent reports, lot locks) and of
the MQTT outbox, run through `sql.Tx` (`?` placeholders, store/sql.py)."""

from __future__ import annotations

from functools import lru_cache

READING_COLUMNS = ("device_id", "lot", "seq", "cars", "gate_in", "gate_out", "ts", "received_at")
# RETURNING lists what was really inserted: duplicates are skipped by the unique index, not
# counted, and not published again.
INSERT_SUFFIX = "ON CONFLICT (device_id, seq) DO NOTHING RETURNING seq"
# The device's lot and status, its current and suspect seq, and what its agent runs and should
# run in the same primary-key lookup: a post that carries no agent report costs no extra query
# for the update check.
DEVICE_LOT = (
    "SELECT c.lot, c.enabled, s.last_seq, s.seq_suspect, a.version, a.target, a.state "
    "FROM clients c LEFT JOIN device_state s ON s.device_id = c.client_id "
    "LEFT JOIN device_agent a ON a.device_id = c.client_id "
    "WHERE c.client_id = ? AND c.kind = 'device' AND c.deleted_at IS NULL"
)
# One upsert records the visit, the health (if sent) and the current reading (if any, chosen by
# service/ingest/seqrule.py from the board's state read with its lot: a board's posts come one
# after another, so the read cannot race another post of the same board but for a retry, which
# stores nothing new). A reading that is not current is stored all the same.
STATE_UPSERT = (
    "INSERT INTO device_state (device_id, last_seen_at, last_seq, cars, ts, received_at, "  # noqa: S608
    "seq_suspect{h}) VALUES (?, ?, ?, ?, ?, ?, ?{hv}) ON CONFLICT (device_id) DO UPDATE SET "
    "last_seen_at = excluded.last_seen_at, seq_suspect = excluded.seq_suspect{hs}, "
    + ", ".join(
        f"{col} = CASE WHEN excluded.last_seq IS NOT NULL THEN excluded.{col} "
        f"ELSE device_state.{col} END"
        for col in ("last_seq", "cars", "ts", "received_at")
    )
)
SEEN = STATE_UPSERT.format(h="", hv="", hs="")
SEEN_WITH_HEALTH = STATE_UPSERT.format(
    h=", health, health_at",
    hv=", ?, ?",
    hs=", health = excluded.health, health_at = excluded.health_at",
)
# Posts refused for the per-device readings rate, counted on the board (service/ingest/routes.py).
REFUSED = (
    "UPDATE device_state SET refused = COALESCE(refused, 0) + ?, refused_at = ? WHERE device_id = ?"
)
AGENT_UPSERT = (
    "INSERT INTO device_agent (device_id, version, state, reason, updated_at) "
    "VALUES (?, ?, ?, ?, ?) ON CONFLICT (device_id) DO UPDATE SET version = excluded.version, "
    "state = COALESCE(excluded.state, device_agent.state), "
    "reason = CASE WHEN excluded.state IS NULL THEN device_agent.reason ELSE excluded.reason END, "
    "updated_at = excluded.updated_at"
)
AUDIT = "INSERT INTO audit_log (at, actor, action, target, detail) VALUES (?, ?, ?, ?, ?)"
# Every lot of a group, locked in one statement in one global order (of the lock keys, so two
# lots whose names hash alike cannot be taken in opposite orders by two groups).
LOCK_LOTS = (
    "SELECT pg_advisory_xact_lock(h) FROM (SELECT DISTINCT hashtext(lot) AS h "
    "FROM unnest(CAST(? AS text[])) AS lots(lot) ORDER BY h OFFSET 0) AS ordered"
)

OUTBOX_COLUMNS = ("topic", "payload", "retain", "created_at")
OUTBOX_AFTER = "SELECT id, topic, payload, retain FROM mqtt_outbox WHERE id > ? ORDER BY id LIMIT ?"
OUTBOX_COUNT_UP_TO = "SELECT count(*) FROM mqtt_outbox WHERE id <= ?"
OUTBOX_DEPTH = "SELECT count(*) FROM mqtt_outbox"
OUTBOX_OLDEST = "SELECT created_at FROM mqtt_outbox ORDER BY id LIMIT 1"
# The relay role: a session-level advisory lock (outbox.RELAY_LOCK_KEY) on its own connection.
RELAY_LOCK = "SELECT pg_try_advisory_lock(?)"


@lru_cache(maxsize=8)
def outbox_delete_ranges(runs: int) -> str:
    """`DELETE` of the outbox rows in `runs` id ranges (`id BETWEEN ? AND ?`, ...)."""
    where = " OR ".join(["id BETWEEN ? AND ?"] * runs)
    return f"DELETE FROM mqtt_outbox WHERE {where}"  # noqa: S608 - placeholders only
