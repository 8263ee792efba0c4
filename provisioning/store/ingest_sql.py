"""SQL text of the ingestion path (readings, device state, agent reports, lot locks) and of
the MQTT outbox, run through `sql.Tx` (`?` placeholders, store/sql.py)."""

from __future__ import annotations

from functools import lru_cache

READING_COLUMNS = ("device_id", "lot", "seq", "cars", "gate_in", "gate_out", "ts", "received_at")
# RETURNING lists what was really inserted: duplicates are skipped by the unique index, not
# counted, and not published again.
INSERT_SUFFIX = "ON CONFLICT (device_id, seq) DO NOTHING RETURNING seq"
# The device's lot and status, and what its agent runs and should run, in the same
# primary-key lookup: a post that carries no agent report costs no extra query for the update
# check.
DEVICE_LOT = (
    "SELECT c.lot, c.enabled, a.version, a.target, a.state FROM clients c "
    "LEFT JOIN device_agent a ON a.device_id = c.client_id "
    "WHERE c.client_id = ? AND c.kind = 'device' AND c.deleted_at IS NULL"
)
# One upsert records the visit, the health (if sent) and the current reading (if any).
#
# The current reading: a post's new reading with the highest seq replaces the current one if
# its seq is higher (normal progress), or if it is more than SEQ_GAP away on either side: a
# discontinuity (a seq restarted by a re-flash or a wiped spool, or a stray value such as
# 2**63-1 from a torn spool or a bug) after which the board's newest post is the truth. Only a
# slightly lower seq (a late replay from the spool) leaves the current reading alone. "Highest
# seq ever" is not the rule: one stray seq would pin the lot's total for ever. A stray seq is
# stored like any other reading (nothing is lost) and is current only until the board's next
# post. Differences, not sums, so BIGINT cannot overflow. SET expressions read the row as it
# was before the update (SQLite and PostgreSQL alike).
SEQ_GAP = 1_000_000  # far more than a board's spool holds (device/spool.py)
NEWER = (
    "(excluded.last_seq IS NOT NULL AND (device_state.last_seq IS NULL"
    " OR excluded.last_seq - device_state.last_seq > 0"
    f" OR device_state.last_seq - excluded.last_seq > {SEQ_GAP}))"
)
STATE_UPSERT = (
    "INSERT INTO device_state (device_id, last_seen_at, last_seq, cars, ts, received_at{h}) "
    "VALUES (?, ?, ?, ?, ?, ?{hv}) ON CONFLICT (device_id) DO UPDATE SET "
    "last_seen_at = excluded.last_seen_at{hs}, "
    + ", ".join(
        f"{col} = CASE WHEN {NEWER} THEN excluded.{col} ELSE device_state.{col} END"
        for col in ("last_seq", "cars", "ts", "received_at")
    )
)
SEEN = STATE_UPSERT.format(h="", hv="", hs="")
SEEN_WITH_HEALTH = STATE_UPSERT.format(
    h=", health, health_at",
    hv=", ?, ?",
    hs=", health = excluded.health, health_at = excluded.health_at",
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
