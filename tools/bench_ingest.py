"""Ingestion throughput beside the framework ceiling, and POST -> MQTT latency (issue 3).

Starts the real service (`python -m provisioning serve`) on SQLite on a free port, with devices
registered straight into its database, and drives it from the separate load-generator process
(tools/loadgen.py) with pre-built requests, so every reading has a fresh seq and is really stored:

- single-reading posts/s, each through the full bearer-token check (signature verified once per
  token, then the verified-token cache, plus the device status check), alternating with
  `GET /healthz` (the ceiling) in the same run; target >= 50% of the ceiling;
- readings/s in 500-reading batches; target >= 100,000 readings/s on SQLite; measured without a
  broker and again with MQTT fan-out on (every reading also written to the outbox);
- the latency from sending a POST to a dashboard's paho subscriber receiving the reading, through
  the outbox, the publisher thread and Mosquitto started from broker-config/ (p50/p99).
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from provisioning.store.db import make_engine
from tools.harness.clients import register_devices
from tools.harness.mosquitto import MosquittoBroker
from tools.harness.server import ServiceProcess
from tools.loadgen import build_request, run_in_process

SINGLE_CONNECTIONS = 64
BATCH_CONNECTIONS = 8
BATCH = 500
SECONDS = 3.0
ROUNDS = 3
WARMUP = 1.0
SINGLE_TARGET = 0.50
BATCH_TARGET = 100_000
LATENCY_SAMPLES = 300
LOT = "bench-lot"
# The service's /metrics is read below: open it (it needs an operator token by default).
_METRICS = {"PARK_METRICS_PUBLIC": "1"}


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


def load(
    port: int,
    requests: list[str],
    connections: int,
    replay: bool = False,
    warmup: float = WARMUP,
) -> dict[str, Any]:
    """Drive the service; without `replay` each request is sent at most once (fresh seqs)."""
    spec = {
        "port": port,
        "requests": requests,
        "connections": connections,
        "duration": SECONDS,
        "warmup": warmup,
        "total": 10**9 if replay else len(requests),
    }
    return run_in_process(spec)


def stored_readings(data_dir: Path) -> int:
    engine = make_engine(f"sqlite:///{data_dir / 'parkfleet.db'}")
    with engine.connect() as conn:
        count = int(conn.exec_driver_sql("SELECT count(*) FROM readings").scalar_one())
    engine.dispose()
    return count


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc): contention-proof cost."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measured(
    service: ServiceProcess,
    requests: list[str],
    replay: bool,
    connections: int = SINGLE_CONNECTIONS,
) -> dict[str, Any]:
    """One load run, plus the server's CPU time per request over it."""
    assert service.proc is not None
    before = cpu_seconds(service.proc.pid)
    result = load(service.port, requests, connections, replay=replay, warmup=0.0)
    spent = cpu_seconds(service.proc.pid) - before
    result["cpu_us_per_request"] = round(spent / max(result["requests"], 1) * 1e6)
    return result


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
            rounds.append((measured(service, healthz, True), measured(service, posts, False)))
    # Best round of each: noise on a shared machine only ever slows things down.
    ceiling = max((r[0] for r in rounds), key=lambda r: r["rps"])
    single = max((r[1] for r in rounds), key=lambda r: r["rps"])
    ratio = single["rps"] / ceiling["rps"] if ceiling["rps"] else 0.0
    cpu_ceiling = statistics.median(r[0]["cpu_us_per_request"] for r in rounds)
    cpu_single = statistics.median(r[1]["cpu_us_per_request"] for r in rounds)
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
    """The service's count of MQTT messages the broker acknowledged (from /metrics)."""
    for line in httpx.get(f"{url}/metrics", timeout=10).text.splitlines():
        if line.startswith("parkfleet_mqtt_published_total "):
            return float(line.split()[1])
    return 0.0


def bench_batches(tmp: Path, broker: MosquittoBroker | None) -> list[dict[str, Any]]:
    """Readings/s in 500-reading batches; with a broker, also the outbox's publish rate."""
    data_dir = tmp / ("batch-mqtt" if broker else "batch")
    creds = register_devices(data_dir, BATCH_CONNECTIONS, LOT)
    args = ["--log-level", "warning"]
    env = {**_METRICS, **({"PARK_MQTT_URL": broker.url()} if broker else {})}
    with ServiceProcess(data_dir, extra_args=args, env=env) as service:
        tokens = fetch_tokens(service.url, creds)
        posts = counts_requests(f"127.0.0.1:{service.port}", tokens, 150, BATCH)
        acked = published(service.url) if broker else 0.0
        started = time.perf_counter()
        result = measured(service, posts, False, BATCH_CONNECTIONS)
        publish_rate = (published(service.url) - acked) / (time.perf_counter() - started)
    readings_per_s = result["rps"] * BATCH
    cpu_us = result["cpu_us_per_request"]
    row: dict[str, Any] = {
        **_row(f"POST /v1/counts {BATCH}-reading batches, readings/s (SQLite)", result),
        "value": round(readings_per_s),
        "posts_per_s": result["rps"],
        "server_cpu_us": cpu_us,
        # What one core would sustain: the figure without the load generator's share of the CPU.
        "readings_per_server_cpu_s": round(BATCH / cpu_us * 1e6) if cpu_us else None,
        "stored": stored_readings(data_dir),
    }
    if broker is None:
        ok = readings_per_s >= BATCH_TARGET and set(result["statuses"]) == {"200"}
        return [{**row, "target": f">= {BATCH_TARGET}", "ok": ok}]
    # With fan-out each batch also writes 501 outbox rows, and the publisher thread (paho,
    # one PUBACK at a time) shares the process: the HTTP side still accepts, the outbox absorbs
    # the difference and drains at the broker's pace.
    return [
        {**row, "metric": f"{row['metric'][:-1]}, MQTT fan-out on)"},
        {
            "bench": "ingest",
            "metric": "MQTT messages published/s during that run (PUBACKed, outbox drained)",
            "value": round(publish_rate),
        },
    ]


def bench_latency(tmp: Path, broker: MosquittoBroker) -> dict[str, Any]:
    """One post at a time; time from send to the subscriber's on_message for that seq."""
    data_dir = tmp / "latency"
    creds = register_devices(data_dir, 1, LOT)
    arrived: dict[int, float] = {}
    cond = threading.Condition()

    def on_message(_c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        seq = json.loads(message.payload)["seq"]
        with cond:
            arrived[seq] = time.perf_counter()
            cond.notify_all()

    watcher = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-dashboard")
    watcher.username_pw_set("dashboard", broker.passwords["dashboard"])
    watcher.on_message = on_message
    watcher.connect("127.0.0.1", broker.port)
    watcher.subscribe(f"parking/{LOT}/devices/+/count", qos=1)
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


def _row(metric: str, result: dict[str, Any]) -> dict[str, Any]:
    return {
        "bench": "ingest",
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
        rows += bench_batches(tmp, None)
        with MosquittoBroker(tmp / "broker") as broker:
            rows += bench_batches(tmp, broker)
            rows.append(bench_latency(tmp, broker))
    return rows


if __name__ == "__main__":
    print(json.dumps(run(), indent=1))
