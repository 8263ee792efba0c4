"""A lot's total on the hot path: a lot of GATES gate boards with long
histories, on SQLite and PostgreSQL, in process (no HTTP, so the store's share shows):

- single-reading gate posts/s through `store_counts` without MQTT fan-out, and with it (the
  lot's total goes into the occupancy message of every post): the total summed by the database
  (`occupancy.total`, today's) and, alternating in the same run, summed in Python over the lot's
  boards (`occupancy.occupancy`, as before);
- the lot's total alone, both ways;
- `list_lots` and `lot_detail` latency (GET /v1/lots, GET /v1/lots/{lot}).

Run: python -m tools.bench.lots [--gates 200] [--history 500]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from provisioning.service.ingest import store
from provisioning.service.ingest.schemas import CountsBatch
from provisioning.service.lots import occupancy
from provisioning.store import sql
from provisioning.store.db import make_engine
from tools.harness.clients import register_devices
from tools.harness.services import postgres_database

LOT = "bench-lot"
ROUNDS = 3
POSTS = 150  # per mode and round


def _batch(seqs: range, n: int = 0) -> CountsBatch:
    gates = [(s, s * 3 + n, s * 2, 1.7e9 + s) for s in seqs]
    return CountsBatch(readings=[], received=len(gates), device_id=None, health=None, gates=gates)


def _fill(url: str, data_dir: Path, gates: int, history: int) -> tuple[Any, list[str]]:
    devices = [d for d, _ in register_devices(data_dir, gates, lot=LOT, db=url)]
    engine = make_engine(url)
    for n, device in enumerate(devices):
        with sql.transaction(engine) as tx:
            store.store_counts(tx, device, _batch(range(history), n), 1.7e9, False)
    return engine, devices


def _timed(fn: Callable[[], object], n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def _python_total(tx: sql.Tx, lot: str) -> tuple[int, int]:
    # The total as computed before `occupancy.total`: every board's row summed in Python.
    occ = occupancy.occupancy(tx, lot).get(lot) or occupancy.Occupancy(lot)
    return occ.cars, occ.devices


def bench(url: str, data_dir: Path, gates: int, history: int) -> dict[str, float]:
    engine, devices = _fill(url, data_dir, gates, history)
    seq = [history]
    sql_total = occupancy.total
    modes = {"off": (False, sql_total), "on, Python sum": (True, _python_total)}
    modes["on, SQL sum"] = (True, sql_total)
    times: dict[str, list[float]] = {mode: [] for mode in modes}
    for _ in range(ROUNDS):
        for mode, (fan_out, total) in modes.items():
            occupancy.total = total  # type: ignore[assignment]

            def post(fan_out: bool = fan_out) -> None:
                device = devices[seq[0] % len(devices)]
                s = seq[0]
                seq[0] += 1
                with sql.transaction(engine) as tx:
                    store.store_counts(tx, device, _batch(range(s, s + 1)), 1.7e9 + s, fan_out)

            times[mode] += _timed(post, POSTS)
    occupancy.total = sql_total  # type: ignore[assignment]
    result = {f"posts/s fan-out {m}": 1 / statistics.median(t) for m, t in times.items()}
    with sql.transaction(engine) as tx:
        assert _python_total(tx, LOT) == sql_total(tx, LOT)
        for name, fn in (("Python", _python_total), ("SQL", sql_total)):
            ms = 1000 * statistics.median(_timed(lambda fn=fn: fn(tx, LOT), 200))
            result[f"lot total ms, {name} sum"] = ms
    with engine.connect() as conn:
        result["GET /v1/lots ms"] = 1000 * statistics.median(
            _timed(lambda: store.list_lots(conn), 50)
        )
        result["GET /v1/lots/{lot} ms"] = 1000 * statistics.median(
            _timed(lambda: store.lot_detail(conn, LOT), 50)
        )
    engine.dispose()
    return result


def _both(gates: int, history: int) -> dict[str, dict[str, float]]:
    with tempfile.TemporaryDirectory() as tmp:
        results = {"sqlite": bench(f"sqlite:///{tmp}/p.db", Path(tmp), gates, history)}
    with tempfile.TemporaryDirectory() as tmp, postgres_database() as url:
        results["postgresql"] = bench(url, Path(tmp), gates, history)
    return results


def run() -> list[dict[str, Any]]:
    """Rows for `make bench`: the SQL sum against the Python sum it replaced, per database."""
    rows: list[dict[str, Any]] = []
    for db, result in _both(200, 500).items():
        on, before = result["posts/s fan-out on, SQL sum"], result["posts/s fan-out on, Python sum"]
        rows.append(
            {
                "bench": "lots",
                "metric": f"{db}: gate posts/s with the MQTT lot total, 200 gate boards "
                "(baseline: summed in Python)",
                "value": on,
                "unit": "posts/s",
                "baseline": before,
                "ratio": round(on / before, 2) if before else 0.0,
            }
        )
        for name in ("GET /v1/lots ms", "GET /v1/lots/{lot} ms", "lot total ms, SQL sum"):
            rows.append(
                {"bench": "lots", "metric": f"{db}: {name}", "value": result[name], "unit": "ms"}
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--gates", type=int, default=200)
    parser.add_argument("--history", type=int, default=500)
    args = parser.parse_args()
    for db, result in _both(args.gates, args.history).items():
        for metric, value in result.items():
            print(f"{db:10} {metric:30} {value:10.2f}")


if __name__ == "__main__":
    main()
