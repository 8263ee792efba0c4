"""Scale-out on PostgreSQL: one worker against two, side by side in one run.

Two real services (`parkctl serve --workers 1` and `--workers 2`) on one PostgreSQL database,
driven in alternating rounds from the separate load-generator process (tools/bench/loadgen.py) so
both see the same machine state:

- `GET /healthz` (the framework ceiling of each);
- `POST /oauth/token`: tokens/s, and its ratio to the same service's ceiling (target >= 0.50),
  each token with its committed audit record and the shared bucket taken in that transaction;
- `POST /v1/counts`, single-reading posts and 500-reading batches: two workers against one
  (target >= 1.6x).

Best round of each (noise on a shared machine only ever slows things down). Each figure also
carries its CPU accounting, per request, since the load generator and PostgreSQL share the
machine's cores with the service: the service's CPU (all its worker processes), PostgreSQL's (its
own private cluster, every backend) and the load generator's own, in microseconds.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from tools.bench.ingest import SECONDS, UNLIMITED_INGEST, counts_requests, fetch_tokens
from tools.bench.loadgen import build_request
from tools.harness.clients import register_devices
from tools.harness.loadrun import measured_load
from tools.harness.pgcluster import PostgresCluster
from tools.harness.server import ServiceProcess

DEVICES = 64
ROUNDS = 3
TOKEN_TARGET = 0.50
SCALE_TARGET = 1.6
BATCH = 500
CONNECTIONS = {"healthz": 64, "token": 64, "single": 64, "batch": 8}


def _token_requests(host: str, creds: list[tuple[str, str]]) -> list[str]:
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    return [
        build_request(
            "POST",
            "/oauth/token",
            host,
            form,
            urlencode(
                {"grant_type": "client_credentials", "client_id": cid, "client_secret": secret}
            ).encode(),
        )
        for cid, secret in creds
    ]


def _measured(
    service: ServiceProcess, pg: PostgresCluster, name: str, requests: list[str], replay: bool
) -> dict[str, Any]:
    """One load run, with the CPU µs per request of the service, PostgreSQL and the loadgen."""
    pg_pid = pg.pid()
    assert pg_pid is not None
    return measured_load(
        service,
        requests,
        CONNECTIONS[name],
        SECONDS,
        replay=replay,
        warmup=0.5,
        database_pid=pg_pid,
    )


def _round(
    service: ServiceProcess,
    pg: PostgresCluster,
    tokens: list[str],
    creds: list[tuple[str, str]],
    n: int,
) -> dict[str, Any]:
    host = f"127.0.0.1:{service.port}"
    seq = (n + 1) * 10**7 + service.port * 1000  # fresh seqs per service and round
    runs = {
        "healthz": ([build_request("GET", "/healthz", host)], True),
        "token": (_token_requests(host, creds), True),
        "single": (counts_requests(host, tokens, 300, 1, first_seq=seq), False),
        "batch": (counts_requests(host, tokens[:8], 40, BATCH, first_seq=seq + 10**6), False),
    }
    return {
        name: _measured(service, pg, name, requests, replay)
        for name, (requests, replay) in runs.items()
    }


def run() -> list[dict[str, Any]]:
    """Bench rows: 1 and 2 workers on PostgreSQL, token ratio and ingest scaling."""
    with tempfile.TemporaryDirectory() as tmp, PostgresCluster(Path(tmp) / "pg") as pg:
        db = pg.url
        root = Path(tmp)
        creds = register_devices(root / "w1", DEVICES, lot="bench-lot", db=db)
        (root / "w2").mkdir()
        (root / "w2" / "secret-hash.key").write_bytes(
            (root / "w1" / "secret-hash.key").read_bytes()
        )
        args = ["--token-rate-burst", "1000000000", "--log-level", "warning"]
        # The batch runs post far above the per-device readings rate: lifted, as the token rate
        # is (each instance keeps its own buckets, so 2 workers would otherwise get twice the
        # allowance and the scaling figure would measure the limiter).
        env = {"PARK_ISSUER": "https://bench.test", **UNLIMITED_INGEST}
        services = [
            ServiceProcess(root / f"w{n}", db=db, extra_args=[*args, "--workers", str(n)], env=env)
            for n in (1, 2)
        ]
        # The second instance needs the first one's key-encryption key: same database.
        services[0].start()
        try:
            (root / "w2" / "key-encryption.key").write_bytes(
                (root / "w1" / "key-encryption.key").read_bytes()
            )
            services[1].start()
            tokens = fetch_tokens(services[0].url, creds)
            rounds: dict[int, list[dict[str, Any]]] = {1: [], 2: []}
            for n in range(ROUNDS):
                for workers, service in zip((1, 2), services, strict=True):
                    rounds[workers].append(_round(service, pg, tokens, creds, n))
        finally:
            for service in services:
                service.stop()
    best = {
        workers: {
            name: max((r[name] for r in results), key=lambda r: r["rps"]) for name in CONNECTIONS
        }
        for workers, results in rounds.items()
    }
    rows: list[dict[str, Any]] = []
    for workers in (1, 2):
        ceiling, token = best[workers]["healthz"], best[workers]["token"]
        ratio = token["rps"] / ceiling["rps"] if ceiling["rps"] else 0.0
        rows.append(
            {
                "bench": "scale",
                "metric": f"PostgreSQL, {workers} worker(s): GET /healthz (ceiling)",
                "unit": "req/s",
                "value": ceiling["rps"],
                "p50_ms": ceiling["p50_ms"],
                "p99_ms": ceiling["p99_ms"],
                "cpu_us": ceiling["cpu_us"],
            }
        )
        rows.append(
            {
                "bench": "scale",
                "metric": f"PostgreSQL, {workers} worker(s): POST /oauth/token vs ceiling",
                "unit": "tokens/s",
                "value": token["rps"],
                "p50_ms": token["p50_ms"],
                "p99_ms": token["p99_ms"],
                "cpu_us": token["cpu_us"],
                "baseline": ceiling["rps"],
                "ratio": round(ratio, 3),
                "target": f">= {TOKEN_TARGET:.2f}",
                "ok": ratio >= TOKEN_TARGET and set(token["statuses"]) == {"200"},
            }
        )
    for name, what, unit, per in (
        ("single", "POST /v1/counts 1 reading/post", "posts/s", 1),
        ("batch", f"POST /v1/counts {BATCH}-reading batches", "readings/s", BATCH),
    ):
        one, two = best[1][name], best[2][name]
        ratio = two["rps"] / one["rps"] if one["rps"] else 0.0
        rows.append(
            {
                "bench": "scale",
                "metric": f"PostgreSQL {what}: 2 workers vs 1",
                "unit": unit,
                "value": round(two["rps"] * per),
                "p50_ms": two["p50_ms"],
                "p99_ms": two["p99_ms"],
                "cpu_us": {"1 worker": one["cpu_us"], "2 workers": two["cpu_us"]},
                "baseline": round(one["rps"] * per),
                "ratio": round(ratio, 3),
                "target": f">= {SCALE_TARGET:.1f}",
                "ok": ratio >= SCALE_TARGET
                and set(one["statuses"]) == set(two["statuses"]) == {"200"},
            }
        )
    return rows


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=1))
