"""SQL text of lot occupancy (gate boards' counters, baselines, totals) and of the history
rollup, run through `sql.Tx` (`?` placeholders, store/sql.py)."""

from __future__ import annotations

GATE_STATE = (
    "SELECT g_seq, g_in, g_out, g_total_in, g_total_out, g_ref_in, g_ref_out, g_series, "
    "g_suspect, g_credit_in, g_credit_out, g_credit_at, g_faults FROM device_state "
    "WHERE device_id = ?"
)
GATE_UPDATE = (
    "UPDATE device_state SET g_seq = ?, g_in = ?, g_out = ?, g_total_in = ?, g_total_out = ?, "
    "g_ref_in = COALESCE(g_ref_in, 0), g_ref_out = COALESCE(g_ref_out, 0), g_series = ?, "
    "g_series_at = CASE WHEN ? THEN ? ELSE g_series_at END, g_suspect = ?, g_credit_in = ?, "
    "g_credit_out = ?, g_credit_at = ?, g_faults = ?, "
    "g_fault_at = CASE WHEN ? THEN ? ELSE g_fault_at END WHERE device_id = ?"
)
DEVICES = (
    "SELECT c.client_id, c.lot, s.cars, s.g_seq, s.g_total_in, s.g_total_out, s.g_ref_in, "
    "s.g_ref_out, s.g_series, s.g_series_at, s.g_faults, s.g_fault_at FROM clients c "
    "LEFT JOIN device_state s ON s.device_id = c.client_id "
    "WHERE c.kind = 'device' AND c.deleted_at IS NULL AND c.lot IS NOT NULL"
)
BASELINES = "SELECT lot, cars, since FROM lot_baselines"
# The same sum as `occupancy` in one aggregate row, for the hot path (the MQTT total of every
# post): a gate board (no `cars`, a `g_seq`) adds its flows since the baseline, any other board
# its `cars` (0 before its first reading). The flows are already wrap-safe sums (`advance`).
TOTAL = (
    "SELECT COUNT(*), SUM(CASE WHEN s.cars IS NULL AND s.g_seq IS NOT NULL "
    "THEN (s.g_total_in - COALESCE(s.g_ref_in, 0)) - (s.g_total_out - COALESCE(s.g_ref_out, 0)) "
    "ELSE COALESCE(s.cars, 0) END), "
    "(SELECT cars FROM lot_baselines WHERE lot = ?) FROM clients c "
    "LEFT JOIN device_state s ON s.device_id = c.client_id "
    "WHERE c.kind = 'device' AND c.deleted_at IS NULL AND c.lot = ?"
)
# A recount: the lot locked (PostgreSQL; the ingest path takes the same lock per lot), its
# baseline set, and each of its gate boards' flows counted from here.
LOCK_LOT = "SELECT pg_advisory_xact_lock(hashtext(?))"
BASELINE_UPSERT = (
    "INSERT INTO lot_baselines (lot, cars, since, actor) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (lot) DO UPDATE SET cars = excluded.cars, since = excluded.since, "
    "actor = excluded.actor"
)
_LOT_DEVICES = (
    "SELECT client_id FROM clients WHERE kind = 'device' AND deleted_at IS NULL AND lot = ?"
)
RESET_REFS = (
    "UPDATE device_state SET g_ref_in = g_total_in, g_ref_out = g_total_out "  # noqa: S608
    f"WHERE g_seq IS NOT NULL AND device_id IN ({_LOT_DEVICES})"
)
LOT_GATES = (
    "SELECT device_id, g_seq, g_in, g_out FROM device_state "  # noqa: S608
    f"WHERE g_seq IS NOT NULL AND device_id IN ({_LOT_DEVICES}) ORDER BY device_id"
)

ROLLUP_COLUMNS = ("lot", "res", "device_id", "bucket", "cars", "at", "seq")
# Only a reading that is later in its bucket (by time, then seq) replaces the bucket's row.
ROLLUP_UPSERT_SUFFIX = (
    "ON CONFLICT (lot, res, device_id, bucket) DO UPDATE SET "
    "cars = excluded.cars, at = excluded.at, seq = excluded.seq "
    "WHERE excluded.at > occupancy_rollup.at "
    "OR (excluded.at = occupancy_rollup.at AND excluded.seq > occupancy_rollup.seq)"
)
ROLLUP_DEVICES = (
    "SELECT DISTINCT r.device_id, c.lot, c.deleted_at FROM occupancy_rollup r "
    "LEFT JOIN clients c ON c.client_id = r.device_id WHERE r.lot = ? AND r.res = ?"
)
# The device's rows in the range, starting with the last one before it (its value then).
ROLLUP_ROWS = (
    "SELECT bucket, cars FROM occupancy_rollup WHERE lot = ? AND res = ? AND device_id = ? "
    "AND bucket >= COALESCE((SELECT MAX(bucket) FROM occupancy_rollup "
    "WHERE lot = ? AND res = ? AND device_id = ? AND bucket < ?), ?) AND bucket < ? "
    "ORDER BY bucket"
)
ROLLUP_LAST = "SELECT MAX(bucket) FROM occupancy_rollup WHERE lot = ? AND res = ? AND device_id = ?"
