"""The outbox relay's PUBACKed QoS 1 messages/s beside a plain paho publisher.

Both push the same messages (one-reading batch messages of 64 devices, the smallest and so the
most numerous kind, plus lot totals) to the same Mosquitto, started from broker-config/, in
alternating rounds of one run:

- the ceiling: a plain paho-mqtt client, QoS 1, publishing as fast as it can with the relay's
  window of unacknowledged messages (a semaphore: paho's own `max_inflight_messages` rescans its
  whole queue on every PUBACK, and without any limit its 16-bit packet ids run out and
  `publish()` refuses messages), every PUBACK awaited;
- the relay: `OutboxPublisher` draining the same messages from an SQLite outbox, each deleted
  only after its PUBACK; timed from `start()` until the last one is deleted.

Target: the relay >= 25,000 messages/s. The ratio relay/paho is reported beside it.
"""

from __future__ import annotations

import json
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from prometheus_client import CollectorRegistry

from provisioning.service.ingest import outbox
from provisioning.service.ingest.mqtt import WINDOW, OutboxPublisher, parse_mqtt_url
from provisioning.store import sql
from provisioning.store.db import make_engine, migrate
from tools.harness.mosquitto import SERVICE_USER, MosquittoBroker

MESSAGES = 100_000
DEVICES = 64
ROUNDS = 2
TARGET = 25_000
LOT = "bench-lot"


def messages() -> list[tuple[str, str, bool]]:
    """MESSAGES one-reading batch messages, a lot total after every DEVICES of them."""
    out: list[tuple[str, str, bool]] = []
    seq = 0
    while len(out) < MESSAGES:
        for n in range(DEVICES - 1):
            out.append(outbox.readings_message(LOT, f"dev_{n:04d}", [(seq, n % 40, 1.8e9)], 1.8e9))
        out.append(outbox.occupancy_message(LOT, seq % 500, DEVICES, 1.8e9))
        seq += 1
    return out[:MESSAGES]


def plain_paho(broker: MosquittoBroker, batch: list[tuple[str, str, bool]]) -> float:
    """Messages/s of a plain paho client publishing `batch` at QoS 1 until all are PUBACKed."""
    acked = [0]
    done = threading.Event()
    window = threading.Semaphore(WINDOW)

    def on_publish(*_args: object) -> None:
        acked[0] += 1  # paho's network thread only
        window.release()
        if acked[0] == len(batch):
            done.set()

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-paho")
    client.username_pw_set(SERVICE_USER, broker.passwords[SERVICE_USER])
    client.max_inflight_messages_set(0)
    client.on_publish = on_publish
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    try:
        started = time.perf_counter()
        for topic, payload, retain in batch:
            window.acquire()
            if client.publish(topic, payload, qos=1, retain=retain).rc:
                raise RuntimeError("paho refused a message")
        if not done.wait(60):
            raise RuntimeError(f"paho: only {acked[0]} of {len(batch)} PUBACKs")
        return len(batch) / (time.perf_counter() - started)
    finally:
        client.disconnect()
        client.loop_stop()


def relay(broker: MosquittoBroker, batch: list[tuple[str, str, bool]], db: Path) -> float:
    """Messages/s of the relay draining `batch` from an outbox, each deleted after its PUBACK."""
    url = f"sqlite:///{db}"
    migrate(url)
    engine = make_engine(url)
    with sql.transaction(engine) as tx:
        for at in range(0, len(batch), 1000):
            outbox.enqueue(tx, batch[at : at + 1000], 1.8e9)
    registry = CollectorRegistry()
    publisher = OutboxPublisher(engine, parse_mqtt_url(broker.url()), registry=registry)
    started = time.perf_counter()
    publisher.start()
    try:
        deadline = started + 300
        while (registry.get_sample_value("parkfleet_mqtt_published_total") or 0) < len(batch):
            if time.perf_counter() > deadline:
                raise RuntimeError("relay: outbox not drained")
            time.sleep(0.002)
        seconds = time.perf_counter() - started
    finally:
        publisher.stop()
        engine.dispose()
    return len(batch) / seconds


def run() -> list[dict[str, Any]]:
    """Bench rows: plain paho (the ceiling) and the relay, best of ROUNDS alternating rounds."""
    batch = messages()
    paho_rates, relay_rates = [], []
    with tempfile.TemporaryDirectory() as name, MosquittoBroker(Path(name) / "broker") as broker:
        for n in range(ROUNDS):
            paho_rates.append(plain_paho(broker, batch))
            relay_rates.append(relay(broker, batch, Path(name) / f"relay-{n}.db"))
    ceiling, best = max(paho_rates), max(relay_rates)
    return [
        {
            "bench": "relay",
            "metric": f"plain paho QoS 1 publisher, PUBACKed msg/s ({MESSAGES:,} messages)",
            "value": round(ceiling),
            "unit": "msg/s",
        },
        {
            "bench": "relay",
            "metric": "outbox relay -> Mosquitto, PUBACKed and deleted msg/s",
            "value": round(best),
            "unit": "msg/s",
            "baseline": round(ceiling),
            "ratio": round(best / ceiling, 3),
            "target": f">= {TARGET:,} msg/s",
            "ok": best >= TARGET,
        },
    ]


if __name__ == "__main__":
    print(json.dumps(run(), indent=1))
