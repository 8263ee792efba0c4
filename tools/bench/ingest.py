"""Ingestion throughput beside the framework ceiling, and POST -> MQTT latency.

Starts the real service (`python -m provisioning serve`) on SQLite on a free port, with devices
registered straight into its database, and drives it from the separate load-generator
process (tools/bench/loadgen.py) with pre-built requests, so every reading has a fresh seq and
is really stored:

- single-reading posts/s, each through the full bearer-token check (signature verified once per
  token, then the verified-token cache, plus the device status check), alternating with
  `GET /healthz` (the ceiling) in the same run; target >= 50% of the ceiling;
- readings/s in 500-reading batches; target >= 100,000 readings/s on SQLite; with MQTT fan-out
  off and on (two services, alternating rounds in one run); target on/off >= 0.70;
- then SUSTAINED_S (60 s) of batches with fan-out on between two 30 s runs with it off (target
  on/off >= 0.70), the outbox sampled meanwhile, and the time it takes to drain after the load
  stops; target <= 5 s;
- the latency from sending a POST to a dashboard's paho subscriber receiving the reading, through
  the outbox, the relay thread and Mosquitto started from broker-config/ (p50/p99).

The relay's own rate against a plain paho publisher is tools/bench/relay.py.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from provisioning.service.ingest import outbox
from provisioning.store import sql
from provisioning.store.db import make_engine
from tools.bench.loadgen import build_request, run_in_process
from tools.harness.clients import register_devices
from tools.harness.loadrun import measured_load
from tools.harness.mosquitto import MosquittoBroker
from tools.harness.server import ServiceProcess

SINGLE_CONNECTIONS = 64
BATCH_CONNECTIONS = 8
BATCH = 500
SECONDS = 3.0
ROUNDS = 3
WARMUP = 1.0
SINGLE_TARGET = 0.50
BATCH_TARGET = 100_000
FANOUT_TARGET = 0.70  # readings/s with fan-out on vs off
SUSTAINED_S = 60.0
DRAIN_TARGET_S = 5.0
LATENCY_SAMPLES = 300
LOT = "bench-lot"
# The service's /metrics is read below: open it (it needs an operator token by default).
_METRICS = {"PARK_METRICS_PUBLIC": "1"}
# The batch runs post 500-reading batches from 8 boards as fast as the store takes them, far
# above the per-device readings rate (config.py): lifted there, as the token rate is. The
# one-reading run keeps the default: each board's 300 posts a round fit in its burst, so the
# limiter is on its path and measured with it.
UNLIMITED_INGEST = {
    "PARK_INGEST_READINGS_BURST": "1000000000",
    "PARK_INGEST_READINGS_PER_MINUTE": "1000000000",
}


def fetch_tokens(url: str, creds: list[tuple[str, str]]) -> list[str]:
    with httpx.Client(base_url=url, timeout=10) as http:
        tokens = []
        for client_id, secret in creds:
            response = http.post(
                "/oauth/token", data={"grant_type": "client_credentials"}, auth=(client_id, secret)
            )
            response.raise_for_status()
            tokens.append(str(response.json()["access_token"]))
    return tokens


def counts_requests(
    host: str, tokens: list[str], per_device: int, batch: int, first_seq: int = 0
) -> list[str]:
    """`per_device` posts per token with fresh seqs, ordered so that the load generator's
    connection n (which takes requests[n::connections]) is device n."""
    requests = []
    for k in range(per_device):
        for token in tokens:
            seq0 = first_seq + k * batch
            readings = [{"seq": seq0 + i, "cars": i % 40, "ts": 1.8e9 + i} for i in range(batch)]
            body = json.dumps({"readings": readings}, separators=(",", ":")).encode()
            headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
            requests.append(build_request("POST", "/v1/counts", host, headers, body))
    return requests


def measured(
    service: ServiceProcess,
    requests: list[str],
    *,
    replay: bool,
    connections: int = SINGLE_CONNECTIONS,
) -> dict[str, Any]:
    """One load run, plus the server's CPU time per request over it."""
    return measured_load(service, requests, connections, SECONDS, replay=replay)


def bench_single(tmp: Path) -> list[dict[str, Any]]:
    data_dir = tmp / "single"
    creds = register_devices(data_dir, SINGLE_CONNECTIONS, LOT)
    args = ["--token-rate-burst", "1000000000", "--log-level", "warning"]
    with ServiceProcess(data_dir, extra_args=args, env=_METRICS) as service:
        host = f"127.0.0.1:{service.port}"
        tokens = fetch_tokens(service.url, creds)
        healthz = [build_request("GET", "/healthz", host)]
        rounds = []
        for n in range(ROUNDS):  # alternating, so both see the same machine state
            posts = counts_requests(host, tokens, 300, 1, first_seq=n * 1000)
            rounds.append(
                (measured(service, healthz, replay=True), measured(service, posts, replay=False))
            )
    # Best round of each: noise on a shared machine only ever slows things down.
    ceiling = max((r[0] for r in rounds), key=lambda r: r["rps"])
    single = max((r[1] for r in rounds), key=lambda r: r["rps"])
    ratio = single["rps"] / ceiling["rps"] if ceiling["rps"] else 0.0
    cpu_ceiling = statistics.median(r[0]["cpu_us"]["server"] for r in rounds)
    cpu_single = statistics.median(r[1]["cpu_us"]["server"] for r in rounds)
    return [
        {**_row("GET /healthz req/s (ceiling)", ceiling), "server_cpu_us": cpu_ceiling},
        {
            **_row(
                f"POST /v1/counts 1 reading/post, posts/s ({SINGLE_CONNECTIONS} devices)", single
            ),
            "server_cpu_us": cpu_single,
            "baseline": ceiling["rps"],
            "ratio": round(ratio, 3),
            "cpu_ratio": round(cpu_ceiling / cpu_single, 3) if cpu_single else 0.0,
            "target": f">= {SINGLE_TARGET:.2f}",
            "ok": ratio >= SINGLE_TARGET and set(single["statuses"]) == {"200"},
        },
    ]


def published(url: str) -> float:
    """The service's count of MQTT messages the broker acknowledged. Read from /metrics (metric
    names are stable: `parkfleet_mqtt_published_total`); the outbox itself is read from the
    database file, so the drain figures do not depend on /metrics being open."""
    for line in httpx.get(f"{url}/metrics", timeout=10).text.splitlines():
        if line.startswith("parkfleet_mqtt_published_total "):
            return float(line.split()[1])
    return 0.0


def outbox_backlog(data_dir: Path) -> tuple[int, float]:
    """(depth, age of the oldest message in s) of a service's outbox, from its SQLite file."""
    engine = make_engine(f"sqlite:///{data_dir / 'parkfleet.db'}")
    try:
        with engine.connect() as conn:
            found = outbox.backlog(sql.Tx.of(conn), time.time())
    finally:
        engine.dispose()
    return found.depth, found.oldest_age_s


def bench_batches(tmp: Path, broker: MosquittoBroker) -> list[dict[str, Any]]:
    """500-reading batches with fan-out off and on, alternating rounds in one run, then a
    SUSTAINED_S run with fan-out on and the time its outbox takes to drain afterwards."""
    services: dict[str, ServiceProcess] = {}
    tokens: dict[str, list[str]] = {}
    try:
        for name, mqtt_url in (("off", None), ("on", broker.url())):
            data_dir = tmp / f"batch-{name}"
            creds = register_devices(data_dir, BATCH_CONNECTIONS, LOT)
            args = ["--log-level", "warning"]
            # The broker URL carries a password: the environment, never the command line.
            env = {
                **_METRICS,
                **UNLIMITED_INGEST,
                **({"PARK_MQTT_URL": mqtt_url} if mqtt_url else {}),
            }
            services[name] = ServiceProcess(data_dir, extra_args=args, env=env).start()
            tokens[name] = fetch_tokens(services[name].url, creds)
        runs: dict[str, list[dict[str, Any]]] = {"off": [], "on": []}
        acked = published(services["on"].url)
        on_seconds = 0.0
        for n in range(ROUNDS):  # alternating, so both see the same machine state
            for name, service in services.items():
                host = f"127.0.0.1:{service.port}"
                posts = counts_requests(host, tokens[name], 150, BATCH, first_seq=n * 10**6)
                started = time.perf_counter()
                runs[name].append(
                    measured(service, posts, replay=False, connections=BATCH_CONNECTIONS)
                )
                if name == "on":
                    on_seconds += time.perf_counter() - started
        publish_rate = (published(services["on"].url) - acked) / on_seconds
        best = {name: max(r, key=lambda r: r["rps"]) for name, r in runs.items()}
        rows = _batch_rows(best, publish_rate)
        rows += _sustained(services, tokens, best["off"]["rps"])
    finally:
        for service in services.values():
            service.stop()
    return rows


def _batch_rows(best: dict[str, dict[str, Any]], publish_rate: float) -> list[dict[str, Any]]:
    off, on = best["off"]["rps"] * BATCH, best["on"]["rps"] * BATCH
    ratio = on / off if off else 0.0
    ok_status = all(set(b["statuses"]) == {"200"} for b in best.values())
    return [
        {
            **_row(f"POST /v1/counts {BATCH}-reading batches, readings/s (SQLite)", best["off"]),
            "value": round(off),
            "server_cpu_us": best["off"]["cpu_us"]["server"],
            "target": f">= {BATCH_TARGET}",
            "ok": off >= BATCH_TARGET and ok_status,
        },
        {
            **_row(f"  the same with MQTT fan-out on (best of {ROUNDS}, alternating)", best["on"]),
            "value": round(on),
            "server_cpu_us": best["on"]["cpu_us"]["server"],
            "baseline": round(off),
            "ratio": round(ratio, 3),
            "target": f">= {FANOUT_TARGET:.2f}",
            "ok": ratio >= FANOUT_TARGET and ok_status,
        },
        {
            "bench": "ingest",
            "metric": "  MQTT messages PUBACKed/s during those runs (1 per batch + lot total)",
            "value": round(publish_rate),
        },
    ]


def _sustained_run(
    service: ServiceProcess, tokens: list[str], posts_per_s: float, seconds: float, first_seq: int
) -> tuple[dict[str, Any], list[tuple[int, float]]]:
    """`seconds` of batches at full speed; the outbox sampled twice a second meanwhile."""
    need = int(posts_per_s * seconds * 1.3 / BATCH_CONNECTIONS) + 1
    host = f"127.0.0.1:{service.port}"
    posts = counts_requests(host, tokens, need, BATCH, first_seq=first_seq)
    samples: list[tuple[int, float]] = []
    running = threading.Event()
    running.set()

    def sample() -> None:
        while running.is_set():
            samples.append(outbox_backlog(service.data_dir))
            time.sleep(0.5)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    spec = {
        "port": service.port,
        "requests": posts,
        "connections": BATCH_CONNECTIONS,
        "duration": seconds,
        "warmup": 0.0,
        "total": len(posts),
    }
    try:
        return run_in_process(spec), samples
    finally:
        running.clear()
        sampler.join()


def _sustained(
    services: dict[str, ServiceProcess], tokens: dict[str, list[str]], posts_per_s: float
) -> list[dict[str, Any]]:
    """SUSTAINED_S with fan-out on, bracketed by two runs half as long with it off (the machine
    is shared: the mean of before and after is the fair baseline), and how long the outbox
    takes to empty after the run with fan-out on."""
    half = SUSTAINED_S / 2
    before, _ = _sustained_run(services["off"], tokens["off"], posts_per_s, half, 10**8)
    on, samples = _sustained_run(services["on"], tokens["on"], posts_per_s, SUSTAINED_S, 10**8)
    ended = time.perf_counter()
    while (left := outbox_backlog(services["on"].data_dir)[0]) and time.perf_counter() - ended < 60:
        time.sleep(0.05)
    drain_s = time.perf_counter() - ended
    after, _ = _sustained_run(services["off"], tokens["off"], posts_per_s, half, 2 * 10**8)
    off_rps = (before["rps"] + after["rps"]) / 2
    ratio = on["rps"] / off_rps if off_rps else 0.0
    statuses_ok = all(set(r["statuses"]) == {"200"} for r in (before, on, after))
    return [
        {
            "bench": "ingest",
            "metric": f"  fan-out off, {half:.0f} s before and {half:.0f} s after, readings/s",
            "value": round(off_rps * BATCH),
            "unit": f"{before['rps'] * BATCH:,.0f} / {after['rps'] * BATCH:,.0f}",
        },
        {
            **_row(f"  sustained {on['seconds']:.0f} s, fan-out on, readings/s", on),
            "value": round(on["rps"] * BATCH),
            "baseline": round(off_rps * BATCH),
            "ratio": round(ratio, 3),
            "target": f">= {FANOUT_TARGET:.2f}",
            "ok": ratio >= FANOUT_TARGET and statuses_ok,
        },
        {
            "bench": "ingest",
            "metric": "  outbox empty after that run (s)",
            "value": round(drain_s, 2),
            "unit": "s",
            "target": f"<= {DRAIN_TARGET_S:.0f}",
            "ok": left == 0 and drain_s <= DRAIN_TARGET_S,
        },
        {
            "bench": "ingest",
            "metric": "  outbox during that run: max depth (messages) / max oldest age",
            "value": max((d for d, _ in samples), default=0),
            "unit": f"msgs / {max((a for _, a in samples), default=0.0):.2f} s",
        },
    ]


def bench_latency(tmp: Path, broker: MosquittoBroker) -> dict[str, Any]:
    """One post at a time; time from send to the subscriber's on_message for that seq."""
    data_dir = tmp / "latency"
    creds = register_devices(data_dir, 1, LOT)
    arrived: dict[int, float] = {}
    cond = threading.Condition()

    def on_message(_c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        seq = json.loads(message.payload)["readings"][0]["seq"]
        with cond:
            arrived[seq] = time.perf_counter()
            cond.notify_all()

    watcher = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-dashboard")
    watcher.username_pw_set("dashboard", broker.passwords["dashboard"])
    watcher.on_message = on_message
    watcher.connect("127.0.0.1", broker.port)
    watcher.subscribe(f"parking/{LOT}/devices/+/readings", qos=1)
    watcher.loop_start()
    latencies = []
    args = ["--log-level", "warning"]
    try:
        with (
            ServiceProcess(
                data_dir, extra_args=args, env={**_METRICS, "PARK_MQTT_URL": broker.url()}
            ) as service,
            service.client() as http,
        ):
            (token,) = fetch_tokens(service.url, creds)
            headers = {"Authorization": f"Bearer {token}"}
            time.sleep(1.0)  # publisher connected
            for seq in range(LATENCY_SAMPLES):
                body = {"readings": [{"seq": seq, "cars": 1, "ts": None}]}
                sent = time.perf_counter()
                http.post("/v1/counts", json=body, headers=headers).raise_for_status()
                with cond:
                    cond.wait_for(lambda seq=seq: seq in arrived, 5)  # type: ignore[misc]
                if seq in arrived:
                    latencies.append(arrived[seq] - sent)
    finally:
        watcher.disconnect()
        watcher.loop_stop()
    lat = sorted(latencies)
    return {
        "bench": "ingest",
        "metric": "POST /v1/counts -> MQTT subscriber latency",
        "value": len(lat),
        "unit": "samples",
        "p50_ms": round(statistics.median(lat) * 1000, 2) if lat else None,
        "p99_ms": round(lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000, 2) if lat else None,
        "lost": LATENCY_SAMPLES - len(lat),
        "ok": len(lat) == LATENCY_SAMPLES,
    }


def _row(metric: str, result: dict[str, Any], bench: str = "ingest") -> dict[str, Any]:
    return {
        "bench": bench,
        "metric": metric,
        "value": result["rps"],
        "p50_ms": result["p50_ms"],
        "p99_ms": result["p99_ms"],
        "statuses": result["statuses"],
    }


def run() -> list[dict[str, Any]]:
    """Bench rows: ceiling, single posts, batches (with and without fan-out), latency."""
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        rows = bench_single(tmp)
        with MosquittoBroker(tmp / "broker") as broker:
            rows += bench_batches(tmp, broker)
            rows.append(bench_latency(tmp, broker))
    return rows


if __name__ == "__main__":
    print(json.dumps(run(), indent=1))
