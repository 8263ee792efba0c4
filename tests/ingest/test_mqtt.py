"""MQTT fan-out through the real Mosquitto from broker-config/: ACLs, delivery, outages."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from fastapi.testclient import TestClient
from paho.mqtt.enums import CallbackAPIVersion
from pydantic import ValidationError

from provisioning.app import create_app
from provisioning.config import Settings, describe_invalid
from provisioning.ingest import outbox
from provisioning.ingest.mqtt import MqttTarget, OutboxPublisher, parse_mqtt_url
from provisioning.store import sql
from provisioning.store.db import make_engine, migrate
from tests.auth.conftest import Auth, make_settings
from tools.harness.mosquitto import MosquittoBroker, Received, Subscriber
from tools.harness.pki import make_pki

pytestmark = pytest.mark.mosquitto


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[MosquittoBroker]:
    with MosquittoBroker(tmp_path / "broker", dashboards=("dashboard", "wallboard")) as b:
        yield b


@pytest.fixture
def api(tmp_path: Path, broker: MosquittoBroker) -> Iterator[Auth]:
    settings = make_settings(tmp_path / "data", mqtt_url=broker.url(), metrics_public=True)
    with TestClient(create_app(settings)) as http:
        auth = Auth(http)
        assert auth.ctx.mqtt is not None
        deadline = time.monotonic() + 10
        while not auth.ctx.mqtt.connected and time.monotonic() < deadline:
            time.sleep(0.02)
        assert auth.ctx.mqtt.connected, broker.log()
        yield auth


def post(api: Auth, token: str, seqs: range, cars: int = 1) -> None:
    body = {"readings": [{"seq": s, "cars": cars, "ts": None} for s in seqs]}
    response = api.http.post("/v1/counts", json=body, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == len(seqs)


def device(api: Auth, lot: str) -> tuple[str, str]:
    client_id, secret = api.device(lot=lot)
    return client_id, api.token(client_id, secret)


def wait_drained(api: Auth, timeout: float = 10) -> None:
    """Until the publisher has had every outbox message acknowledged and deleted."""
    deadline = time.monotonic() + timeout
    while True:
        with api.ctx.engine.connect() as conn:
            left = outbox.pending(conn)
        if left == 0:
            return
        assert time.monotonic() < deadline, f"{left} messages still in the outbox"
        time.sleep(0.02)


def payloads(messages: list[Received]) -> list[dict[str, object]]:
    return [json.loads(m.payload) for m in messages]


def test_url_parsing() -> None:
    target = parse_mqtt_url("mqtt://svc:p%40ss@broker.example:1884")
    assert target == MqttTarget("broker.example", 1884, "svc", "p@ss")
    assert "p@ss" not in repr(target) and "p@ss" not in target.safe_url
    tls = parse_mqtt_url("mqtts://svc:x@h?ca=/etc/ca.pem")
    assert (tls.port, tls.tls, tls.ca_file) == (8883, True, "/etc/ca.pem")
    for bad in ("http://h", "mqtt://", "mqtt://h:99999", "mqtt://h?ca=x", "mqtts://h?x=1"):
        with pytest.raises(ValueError):
            parse_mqtt_url(bad)


def test_park_mqtt_url_switches_fan_out_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PARK_MQTT_URL", "mqtt://svc:pw@broker.example:1884")
    app = create_app(Settings(data_dir=tmp_path / "data"))
    publisher = app.state.ctx.mqtt
    assert publisher is not None and publisher.target.safe_url == "mqtt://svc@broker.example:1884"


def test_a_bad_mqtt_url_stops_the_service_with_a_clear_message(tmp_path: Path) -> None:
    with pytest.raises(ValidationError) as caught:  # the settings refuse it, before any app
        make_settings(tmp_path / "data", mqtt_url="http://svc:s3cret@broker:1883")
    message = describe_invalid(caught.value)
    assert "mqtt://" in message and "s3cret" not in message
    assert "s3cret" not in str(caught.value)
    # `parkctl serve` stops at start with that one line, not a traceback.
    done = subprocess.run(
        [sys.executable, "-m", "provisioning", "serve", "--data-dir", str(tmp_path / "d")],
        env={**os.environ, "PARK_MQTT_URL": "http://svc:s3cret@broker:1883"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [f"error: {message}"]
    assert "s3cret" not in done.stdout + done.stderr


def test_broker_accounts_and_acls(broker: MosquittoBroker) -> None:
    with Subscriber(broker, user=None) as anonymous:
        assert getattr(anonymous.wait_connected(), "is_failure", False)
    with Subscriber(broker, password="wrong") as wrong:
        assert getattr(wrong.wait_connected(), "is_failure", False)
    with Subscriber(broker, "dashboard") as watcher, Subscriber(broker, "wallboard") as rogue:
        watcher.wait_subscribed()
        rogue.wait_subscribed()
        # A dashboard account publishing: MQTT 3.1.1 brokers drop it silently (PUBACK and all).
        rogue.client.publish("parking/lot-1/occupancy", b'{"cars": 999}', qos=1).wait_for_publish(5)
        service = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="test-service")
        service.username_pw_set("parkfleet-service", broker.passwords["parkfleet-service"])
        service.connect("127.0.0.1", broker.port)
        service.loop_start()
        service.publish("parking/lot-1/occupancy", b'{"cars": 3}', qos=1).wait_for_publish(5)
        service.disconnect()
        service.loop_stop()
        got = watcher.wait_for(1)
        watcher.settle()
        assert [m.payload for m in watcher.messages] == [b'{"cars": 3}'], got


def test_counts_reach_dashboards_with_a_retained_total(api: Auth, broker: MosquittoBroker) -> None:
    dev, token = device(api, "north")
    with Subscriber(broker) as watcher:
        watcher.wait_subscribed()
        post(api, token, range(1, 4), cars=6)
        counts = watcher.wait_for(3, topic_prefix=f"parking/north/devices/{dev}/count")
        totals = watcher.wait_for(1, topic_prefix="parking/north/occupancy")
    assert [p["seq"] for p in payloads(counts)] == [1, 2, 3]
    first = payloads(counts)[0]
    assert set(first) == {"lot", "device_id", "seq", "cars", "ts", "received_at"}
    assert (first["lot"], first["device_id"], first["cars"], first["ts"]) == ("north", dev, 6, None)
    assert payloads(totals)[-1]["cars"] == 6
    # A dashboard that connects later still learns the lot's total from the retained message.
    metrics = api.http.get("/metrics").text
    assert "parkfleet_mqtt_connected 1.0" in metrics
    assert 'parkfleet_readings_total{result="accepted"} 3.0' in metrics
    with Subscriber(broker, "wallboard", topic="parking/north/occupancy") as late:
        (retained,) = late.wait_for(1)
    assert retained.retain and json.loads(retained.payload)["cars"] == 6
    with api.ctx.engine.connect() as conn:
        assert outbox.pending(conn) == 0


def test_broker_outage_loses_nothing(api: Auth, broker: MosquittoBroker) -> None:
    a, token_a = device(api, "east")
    b, token_b = device(api, "east")
    publisher = api.ctx.mqtt
    assert publisher is not None
    # A dashboard with a persistent session, as one that must not miss a count would connect.
    with Subscriber(broker, persistent=True) as watcher:
        watcher.wait_subscribed()
        post(api, token_a, range(0, 3))
        watcher.wait_for(3, topic_prefix=f"parking/east/devices/{a}/")
        wait_drained(api)
        broker.stop()
        while publisher.connected:
            time.sleep(0.02)
        # The HTTP API keeps accepting while the broker is away; the outbox holds the messages.
        post(api, token_a, range(3, 40))
        post(api, token_b, range(0, 25))
        post(api, token_a, range(40, 60))
        with api.ctx.engine.connect() as conn:
            assert outbox.pending(conn) == 37 + 25 + 20 + 3
        broker.start()

        def seqs(device: str, messages: list[Received]) -> list[int]:
            prefix = f"parking/east/devices/{device}/"
            return [json.loads(m.payload)["seq"] for m in messages if m.topic.startswith(prefix)]

        # QoS 1 is at least once: a message whose PUBACK was lost may come twice.
        got = watcher.wait_until(
            lambda ms: set(seqs(a, ms)) == set(range(60)) and set(seqs(b, ms)) == set(range(25)),
            timeout=30,
        )
        wait_drained(api)
    assert list(dict.fromkeys(seqs(a, got))) == list(range(60))  # everything, in order
    assert list(dict.fromkeys(seqs(b, got))) == list(range(25))
    totals = [json.loads(m.payload) for m in got if m.topic == "parking/east/occupancy"]
    assert totals[-1]["cars"] == 2


def test_without_a_broker_nothing_is_queued(tmp_path: Path) -> None:
    with TestClient(create_app(make_settings(tmp_path / "data"))) as http:
        api = Auth(http)
        assert api.ctx.mqtt is None
        _dev, token = device(api, "west")
        post(api, token, range(5))
        with api.ctx.engine.connect() as conn:
            assert outbox.pending(conn) == 0


def test_publishing_over_tls_with_a_private_ca(tmp_path: Path) -> None:
    """The config's TLS listener switched on; `mqtts://...?ca=` trusts exactly that CA."""
    pki = make_pki(tmp_path / "pki")
    stranger = make_pki(tmp_path / "other-pki")  # a CA that did not sign the broker's cert
    url = f"sqlite:///{tmp_path / 'park.db'}"
    migrate(url)
    engine = make_engine(url)
    with sql.transaction(engine) as tx:
        outbox.enqueue(tx, [outbox.occupancy_message("tls-lot", 4, 1, 1.0)], 1.0)
    tls = (pki.server_cert, pki.server_key)
    with MosquittoBroker(tmp_path / "broker", tls=tls) as broker, Subscriber(broker) as watcher:
        watcher.wait_subscribed()
        base = broker.url().replace("mqtt://", "mqtts://").replace("127.0.0.1", "localhost")
        base = base.replace(f":{broker.port}", f":{broker.tls_port}")
        wrong = OutboxPublisher(engine, parse_mqtt_url(f"{base}?ca={stranger.ca_pem}"))
        wrong.start()
        time.sleep(1.0)
        assert not wrong.connected  # certificate verification failed: nothing sent
        wrong.stop()
        right = OutboxPublisher(engine, parse_mqtt_url(f"{base}?ca={pki.ca_pem}"))
        right.start()
        try:
            (message,) = watcher.wait_for(1, topic_prefix="parking/tls-lot/")
        finally:
            right.stop()
    assert json.loads(message.payload)["cars"] == 4
    engine.dispose()


def test_broker_lost_mid_round_resends_the_round(tmp_path: Path, broker: MosquittoBroker) -> None:
    """The broker dies while a round is on the wire: nothing acknowledged is lost."""
    url = f"sqlite:///{tmp_path / 'park.db'}"
    migrate(url)
    engine = make_engine(url)
    total = 3000
    with sql.transaction(engine) as tx:
        outbox.enqueue(
            tx,
            outbox.reading_messages("mid", "dev_x", [(seq, 1, None) for seq in range(total)], 1.0),
            1.0,
        )
    publisher = OutboxPublisher(engine, parse_mqtt_url(broker.url()), max_backoff_s=0.5)
    with Subscriber(broker, persistent=True) as watcher:
        watcher.wait_subscribed()
        publisher.start()
        try:
            watcher.wait_until(lambda ms: len(ms) >= 700)  # into the second round
            broker.stop()
            with engine.connect() as conn:
                assert outbox.pending(conn) > 0  # stopped with work on the wire
            broker.start()
            seen: set[int] = set()
            looked = [0]

            def complete(messages: list[Received]) -> bool:
                # Called on every arrival: look only at what is new.
                seen.update(json.loads(m.payload)["seq"] for m in messages[looked[0] :])
                looked[0] = len(messages)
                return len(seen) == total

            got = watcher.wait_until(complete, timeout=60)
        finally:
            publisher.stop()
    seqs = [json.loads(m.payload)["seq"] for m in got]
    assert list(dict.fromkeys(seqs)) == list(range(total))  # duplicates allowed, gaps not
    engine.dispose()
