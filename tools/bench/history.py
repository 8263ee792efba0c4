"""Lot history: 30 days of a 100-board lot at one reading per 10 s (25.9M readings).

For SQLite and PostgreSQL: registers 100 boards through the registry, bulk-inserts their
readings in one SQL statement (a recursive CTE / generate_series), fills the rollup with the
migration's own backfill (timed), then times `history.history_response` (what the endpoint runs)
for 30 days at 1 h steps, 7 days at 1 h and 24 h at 5 min: median of 5, target < 200 ms.
The baseline, side by side: the same 30-day series straight from `readings` through an index on
(device_id, ts) made for it (one "latest before t" seek per board per point), the design the
rollup replaces. `BENCH_HISTORY_DAYS` scales the data down for a quick look;
`BENCH_HISTORY_SQLITE_ONLY=1` skips PostgreSQL. At full size it takes about 25 minutes here,
most of it PostgreSQL's bulk insert (12 min) and SQLite's (3 min). Also: what the rollup
costs a one-reading post's store transaction, alone and in a group commit.
"""

from __future__ import annotations

import importlib
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text

from provisioning.service.auth.secrets import SecretHasher
from provisioning.service.lots import history
from provisioning.service.registry import service
from provisioning.store.db import make_engine, migrate, session_factory
from tools.harness.services import postgres_database

# The rollup's migration, whose backfill is timed here.
ROLLUP_MIGRATION = importlib.import_module(
    "provisioning.store.migrations.versions.0003_occupancy_rollup"
)

BOARDS = 100
EVERY_S = 10
DAYS = float(os.environ.get("BENCH_HISTORY_DAYS", "30"))
LOT = "bench"
T0 = 1_800_000_000  # a multiple of 3600
TARGET_MS = 200.0
REPEATS = 5


def _timed(fn: Callable[[], Any], repeats: int = REPEATS) -> tuple[float, Any]:
    samples, result = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        result = fn()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples), result


def _fill(engine: Engine) -> tuple[int, float, float]:
    """Boards, readings and rollup; returns (readings, insert s, backfill s)."""
    with session_factory(engine)() as session:
        hasher = SecretHasher(b"b" * 32)
        ids = [
            service.create_device(session, hasher, "bench", LOT, f"b{n}")[0].client_id
            for n in range(BOARDS)
        ]
    per_board = int(DAYS * 86400 / EVERY_S)
    postgresql = engine.dialect.name == "postgresql"
    started = time.perf_counter()
    with engine.begin() as conn:
        conn.execute(text("CREATE TEMP TABLE bench_dev (n INTEGER PRIMARY KEY, id TEXT)"))
        conn.execute(
            text("INSERT INTO bench_dev (n, id) VALUES (:n, :id)"),
            [{"n": n, "id": i} for n, i in enumerate(ids)],
        )
        # Cars change every 15 minutes, differently per board; readings every 10 s.
        columns = (
            f"d.id, '{LOT}', k.i, (k.i / 90 + d.n * 3) % 40, "
            f"{T0} + k.i * {EVERY_S} + d.n * 0.01, {T0} + k.i * {EVERY_S} + d.n * 0.01 + 0.2"
        )
        insert = "INSERT INTO readings (device_id, lot, seq, cars, ts, received_at) "
        if postgresql:
            conn.execute(
                text(
                    f"{insert} SELECT {columns} FROM bench_dev d "
                    f"CROSS JOIN generate_series(0, {per_board - 1}) AS k(i)"
                )
            )
        else:
            conn.execute(
                text(
                    f"{insert} WITH RECURSIVE k(i) AS (SELECT 0 UNION ALL "
                    f"SELECT i + 1 FROM k WHERE i < {per_board - 1}) "
                    f"SELECT {columns} FROM bench_dev d CROSS JOIN k"
                )
            )
    inserted = time.perf_counter() - started
    started = time.perf_counter()
    with engine.begin() as conn:
        ROLLUP_MIGRATION.backfill(conn)
    if postgresql:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE"))
    else:
        with engine.begin() as conn:
            conn.execute(text("ANALYZE"))
    return per_board * BOARDS, inserted, time.perf_counter() - started


def _baseline(engine: Engine, times: list[int]) -> list[int | None]:
    """The series straight from `readings`: per point, each board's latest reading before it."""
    step = times[1] - times[0]
    points = (
        f"WITH RECURSIVE p(t) AS (SELECT {times[0]} UNION ALL SELECT t + {step} FROM p "
        f"WHERE t + {step} <= {times[-1]}) "
    )
    query = text(
        f"{points}SELECT p.t, SUM((SELECT r.cars FROM readings r WHERE r.device_id = c.client_id "
        f"AND r.ts < p.t ORDER BY r.ts DESC LIMIT 1)) FROM p "
        f"CROSS JOIN clients c WHERE c.lot = '{LOT}' AND c.kind = 'device' GROUP BY p.t "
        f"ORDER BY p.t"
    )
    with engine.connect() as conn:
        return [None if cars is None else int(cars) for _t, cars in conn.execute(query)]


def _one(backend: str, url: str) -> list[dict[str, Any]]:
    migrate(url)
    engine = make_engine(url)
    try:
        rows, insert_s, backfill_s = _fill(engine)
        end = T0 + int(DAYS * 86400)
        out: list[dict[str, Any]] = [
            {"bench": "history", "metric": f"{backend}: readings stored", "value": rows},
            {"bench": "history", "metric": f"{backend}: bulk insert", "value": insert_s,
             "unit": "s"},
            {"bench": "history", "metric": f"{backend}: rollup backfill", "value": backfill_s,
             "unit": "s"},
        ]  # fmt: skip
        series: dict[str, Any] = {}
        for label, span, step in (
            (f"{DAYS:g} d at 1 h", DAYS * 86400, 3600),
            ("7 d at 1 h", 7 * 86400, 3600),
            ("24 h at 5 min", 86400, 300),
        ):
            start = end - min(span, DAYS * 86400)

            def query(start: float = start, step: int = step) -> Any:
                with engine.connect() as conn:
                    return history.history_response(conn, LOT, start, end, step)

            query()  # warm the caches, as a dashboard that is open keeps them
            p50, body = _timed(query)
            series[label] = body
            out.append(
                {"bench": "history", "metric": f"{backend}: {label} ({len(body['t'])} points)",
                 "value": p50, "unit": "ms", "p50_ms": p50, "target": f"< {TARGET_MS:g} ms",
                 "ok": p50 < TARGET_MS}
            )  # fmt: skip
        longest = series[f"{DAYS:g} d at 1 h"]
        with engine.begin() as conn:
            conn.execute(text("CREATE INDEX bench_readings_device_ts ON readings (device_id, ts)"))
        base_ms, base = _timed(lambda: _baseline(engine, longest["t"]), repeats=3)
        # The two designs must agree, or the comparison means nothing.
        assert base == longest["cars"], "rollup and direct query disagree"
        rollup_ms = next(
            r["p50_ms"] for r in out if r["metric"].startswith(f"{backend}: {DAYS:g} d")
        )
        out.append(
            {"bench": "history", "metric": f"{backend}: same series from readings (index)",
             "value": base_ms, "unit": "ms", "p50_ms": base_ms, "baseline": base_ms,
             "ratio": base_ms / rollup_ms}
        )  # fmt: skip
        return out
    finally:
        engine.dispose()


def _ingest_cost(url: str, group: int, posts: int = 4000) -> list[dict[str, Any]]:
    """What keeping the rollup costs one-reading posts on SQLite: the same posts with and
    without `history.record`, alternating rounds; `group` posts share a commit (1: a quiet
    server, the worst case; under load the group commit of ingest/commit.py forms groups)."""
    from provisioning.service.ingest import store
    from provisioning.service.ingest.schemas import CountsBatch
    from provisioning.store import sql

    migrate(url)
    engine = make_engine(url)
    with session_factory(engine)() as session:
        device = service.create_device(session, SecretHasher(b"b" * 32), "bench", LOT, "x")[0]
    writer = sql.Writer(engine)
    keep = history.record
    seq = 0
    per_post: dict[bool, list[float]] = {True: [], False: []}
    try:
        rounds = 10
        for round_ in range(rounds):
            with_rollup = round_ % 2 == 0
            history.record = keep if with_rollup else (lambda *_args: None)  # type: ignore[assignment]
            started = time.perf_counter()
            for _ in range(posts // rounds // group):
                with writer.transaction() as tx:
                    for _ in range(group):
                        seq += 1
                        batch = CountsBatch([(seq, seq % 40, T0 + seq * 10.0)], 1, None, None)
                        store.store_counts(tx, device.client_id, batch, time.time(), False)
            per_post[with_rollup].append((time.perf_counter() - started) / (posts // rounds) * 1e6)
    finally:
        history.record = keep
        writer.close()
        engine.dispose()
    on, off = statistics.median(per_post[True]), statistics.median(per_post[False])
    return [
        {"bench": "history", "metric": f"sqlite: store 1-reading post, {group}/commit, +rollup",
         "value": on,
         "unit": "us", "baseline": off, "ratio": on / off},
    ]  # fmt: skip


def run() -> list[dict[str, Any]]:
    """Rows for tools/bench/__main__.py."""
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-history-") as tmp:
        for group in (1, 32):
            rows += _ingest_cost(f"sqlite:///{Path(tmp) / f'ingest-{group}.db'}", group)
    with tempfile.TemporaryDirectory(prefix="bench-history-") as tmp:
        rows += _one("sqlite", f"sqlite:///{Path(tmp) / 'history.db'}")
    print(rows, flush=True)  # the SQLite half is worth keeping if PostgreSQL fails
    if os.environ.get("BENCH_HISTORY_SQLITE_ONLY") != "1":
        with postgres_database() as url:
            rows += _one("postgresql", url)
    return rows


if __name__ == "__main__":
    for row in run():
        print(row)
