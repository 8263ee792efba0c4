"""MQTT fan-out through the real Mosquitto from broker-config/: ACLs, delivery, outages."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from fastapi.testclient import TestClient
from paho.mqtt.enums import CallbackAPIVersion
from prometheus_client import CollectorRegistry
from pydantic import ValidationError
from sqlalchemy import Engine

from provisioning.service.app import create_app
from provisioning.service.config import Settings, describe_invalid
from provisioning.service.ingest import outbox
from provisioning.service.ingest.mqtt import WINDOW, MqttTarget, OutboxPublisher, parse_mqtt_url
from provisioning.store import sql
from provisioning.store.db import make_engine, migrate
from tests.service.auth.conftest import Auth, make_settings
from tools.harness.mosquitto import MosquittoBroker, Received, Subscriber
from tools.harness.pki import make_pki

pytestmark = pytest.mark.mosquitto


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


def depth(engine: Engine) -> int:
    with engine.connect() as conn:
        return outbox.backlog(sql.Tx.of(conn), time.time()).depth


def wait_drained(engine: Engine, timeout: float = 10) -> None:
    """Until the relay has had every outbox message acknowledged and deleted."""
    deadline = time.monotonic() + timeout
    while (left := depth(engine)) != 0:
        assert time.monotonic() < deadline, f"{left} messages still in the outbox"
        time.sleep(0.02)


def payloads(messages: list[Received]) -> list[dict[str, Any]]:
    return [json.loads(m.payload) for m in messages]


def seqs(messages: list[Received], lot: str, device: str) -> list[int]:
    """The seqs a subscriber heard for `device`, in arrival order (repeats included)."""
    topic = f"parking/{lot}/devices/{device}/readings"
    return [
        r["seq"] for p in payloads([m for m in messages if m.topic == topic]) for r in p["readings"]
    ]


def metric(text: str, name: str) -> float:
    (value,) = [line.split()[1] for line in text.splitlines() if line.startswith(f"{name} ")]
    return float(value)


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
        (batch,) = watcher.wait_for(1, topic_prefix=f"parking/north/devices/{dev}/readings")
        totals = watcher.wait_for(1, topic_prefix="parking/north/occupancy")
    message = json.loads(batch.payload)
    assert set(message) == {"lot", "device_id", "received_at", "readings"}
    assert (message["lot"], message["device_id"]) == ("north", dev)
    assert message["readings"] == [{"seq": s, "cars": 6, "ts": None} for s in (1, 2, 3)]
    assert payloads(totals)[-1]["cars"] == 6
    # A dashboard that connects later still learns the lot's total from the retained message.
    wait_drained(api.ctx.engine)
    time.sleep(1.1)  # the backlog gauges are read at most once a second
    metrics = api.http.get("/metrics").text
    assert metric(metrics, "parkfleet_mqtt_connected") == 1.0
    assert metric(metrics, "parkfleet_mqtt_relay_active") == 1.0
    assert metric(metrics, "parkfleet_mqtt_published_total") == 2.0
    assert metric(metrics, "parkfleet_mqtt_outbox_depth") == 0.0
    assert metric(metrics, "parkfleet_mqtt_outbox_oldest_age_seconds") == 0.0
    assert 'parkfleet_readings_total{result="accepted"} 3.0' in metrics
    assert api.http.get("/readyz").json() == {"status": "ready", "degraded": []}
    with Subscriber(broker, "wallboard", topic="parking/north/occupancy") as late:
        (retained,) = late.wait_for(1)
    assert retained.retain and json.loads(retained.payload)["cars"] == 6


def test_broker_outage_loses_nothing_and_shows_in_readiness(
    api: Auth, broker: MosquittoBroker
) -> None:
    a, token_a = device(api, "east")
    b, token_b = device(api, "east")
    publisher = api.ctx.mqtt
    assert publisher is not None
    # A dashboard with a persistent session, as one that must not miss a count would connect.
    with Subscriber(broker, persistent=True) as watcher:
        watcher.wait_subscribed()
        post(api, token_a, range(0, 3))
        watcher.wait_for(1, topic_prefix=f"parking/east/devices/{a}/")
        wait_drained(api.ctx.engine)
        broker.stop()
        while publisher.connected:
            time.sleep(0.02)
        # The HTTP API keeps accepting while the broker is away; the outbox holds the messages,
        # and readiness says the fan-out is degraded (the relay is cut off), not the service.
        post(api, token_a, range(3, 40))
        post(api, token_b, range(0, 25))
        post(api, token_a, range(40, 60))
        assert depth(api.ctx.engine) == 3 * 2
        ready = api.http.get("/readyz")
        assert ready.status_code == 200 and ready.json() == {
            "status": "ready",
            "degraded": ["mqtt"],
        }
        time.sleep(1.1)
        metrics = api.http.get("/metrics").text
        assert metric(metrics, "parkfleet_mqtt_outbox_depth") == 6.0
        assert metric(metrics, "parkfleet_mqtt_outbox_oldest_age_seconds") >= 1.0
        broker.start()
        # QoS 1 is at least once: a message whose PUBACK was lost may come twice.
        got = watcher.wait_until(
            lambda ms: (
                set(seqs(ms, "east", a)) == set(range(60))
                and set(seqs(ms, "east", b)) == set(range(25))
            ),
            timeout=30,
        )
        wait_drained(api.ctx.engine)
    assert list(dict.fromkeys(seqs(got, "east", a))) == list(range(60))  # everything, in order
    assert list(dict.fromkeys(seqs(got, "east", b))) == list(range(25))
    totals = [json.loads(m.payload) for m in got if m.topic == "parking/east/occupancy"]
    assert totals[-1]["cars"] == 2
    deadline = time.monotonic() + 5
    while api.http.get("/readyz").json()["degraded"] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert api.http.get("/readyz").json() == {"status": "ready", "degraded": []}


def test_without_a_broker_nothing_is_queued(tmp_path: Path) -> None:
    with TestClient(create_app(make_settings(tmp_path / "data"))) as http:
        api = Auth(http)
        assert api.ctx.mqtt is None
        _dev, token = device(api, "west")
        post(api, token, range(5))
        assert depth(api.ctx.engine) == 0
        assert http.get("/readyz").json() == {"status": "ready", "degraded": []}


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


def test_broker_restarting_mid_run_loses_nothing(tmp_path: Path, broker: MosquittoBroker) -> None:
    """The broker dies with a full window on the wire and comes back: every message arrives, in
    order per device, and the only repeats are what was out without its PUBACK."""
    url = f"sqlite:///{tmp_path / 'park.db'}"
    migrate(url)
    engine = make_engine(url)
    devices, per_device = [f"dev_{n}" for n in range(8)], 8000
    with sql.transaction(engine) as tx:
        for seq in range(per_device):
            outbox.enqueue(
                tx, [outbox.readings_message("mid", d, [(seq, 1, None)], 1.0) for d in devices], 1.0
            )
    total = len(devices) * per_device
    publisher = OutboxPublisher(
        engine, parse_mqtt_url(broker.url()), max_backoff_s=0.5, registry=CollectorRegistry()
    )
    with Subscriber(broker, persistent=True) as watcher:
        watcher.wait_subscribed()
        publisher.start()
        try:
            deadline = time.monotonic() + 60
            while depth(engine) > total * 3 // 4:  # a quarter relayed (faster than dashboards)
                assert time.monotonic() < deadline
                time.sleep(0.005)
            broker.stop()
            assert 0 < depth(engine) < total  # stopped with work on the wire
            broker.start()
            heard: dict[str, set[int]] = {d: set() for d in devices}
            looked = [0]

            def complete(messages: list[Received]) -> bool:
                # Called on every arrival: look only at what is new.
                for m in messages[looked[0] :]:
                    p = json.loads(m.payload)
                    heard[p["device_id"]].update(r["seq"] for r in p["readings"])
                looked[0] = len(messages)
                return all(len(s) == per_device for s in heard.values())

            got = watcher.wait_until(complete, timeout=120)
            wait_drained(engine)
        finally:
            publisher.stop()
    for d in devices:
        assert list(dict.fromkeys(seqs(got, "mid", d))) == list(range(per_device))
    assert len(got) - total <= WINDOW  # repeats only from the at-least-once window
    engine.dispose()


def test_a_full_batch_is_one_message(api: Auth, broker: MosquittoBroker) -> None:
    """500 readings (the API's maximum) in one PUBLISH: a three-byte remaining length."""
    dev, token = device(api, "big")
    with Subscriber(broker) as watcher:
        watcher.wait_subscribed()
        seqs_ = range(10**12, 10**12 + 500)
        body = {"readings": [{"seq": s, "cars": 3, "ts": 1.8e9 + s % 1000 / 7} for s in seqs_]}
        answer = api.http.post(
            "/v1/counts", json=body, headers={"Authorization": f"Bearer {token}"}
        )
        assert answer.json() == {"accepted": 500, "duplicates": 0}
        (batch,) = watcher.wait_for(1, topic_prefix=f"parking/big/devices/{dev}/readings")
    assert len(batch.payload) > 16_383
    assert [r["seq"] for r in json.loads(batch.payload)["readings"]] == list(seqs_)


def test_a_refused_relay_keeps_the_rows_and_says_degraded(
    tmp_path: Path, broker: MosquittoBroker
) -> None:
    """Wrong password: CONNACK 'not authorised' (MQTT 3.1.1 §3.2.2.3); nothing is deleted."""
    url = f"sqlite:///{tmp_path / 'park.db'}"
    migrate(url)
    engine = make_engine(url)
    with sql.transaction(engine) as tx:
        outbox.enqueue(tx, [outbox.occupancy_message("lot-x", 1, 1, 1.0)], 1.0)
    wrong = broker.url().replace(broker.passwords["parkfleet-service"], "not-the-password")
    publisher = OutboxPublisher(engine, parse_mqtt_url(wrong), registry=CollectorRegistry())
    publisher.start()
    try:
        deadline = time.monotonic() + 10
        while not publisher.active:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        time.sleep(0.5)
        assert not publisher.connected and publisher.degraded()
        assert depth(engine) == 1
    finally:
        publisher.stop()
        engine.dispose()


def test_create_accounts_keeps_passwords_off_command_lines(tmp_path: Path) -> None:
    """`create-accounts` with the real mosquitto_passwd, whose every command line is recorded
    on the way (what `ps` would show): no password appears in one, and the file is hashed."""
    real = subprocess.run(
        ["sh", "-c", "command -v mosquitto_passwd"], capture_output=True, text=True
    ).stdout.strip()
    if not real:
        pytest.skip("mosquitto_passwd is not installed")
    bin_dir, seen = tmp_path / "bin", tmp_path / "argv.log"
    bin_dir.mkdir()
    recorder = bin_dir / "mosquitto_passwd"
    recorder.write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> "{seen}"\nexec "{real}" "$@"\n')
    recorder.chmod(0o755)
    passwd = tmp_path / "passwd"
    script = Path(__file__).resolve().parents[3] / "broker-config" / "create-accounts"
    done = subprocess.run(
        [str(script), "-f", str(passwd), "wall"],
        capture_output=True,
        text=True,
        env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"},
    )
    assert done.returncode == 0, done.stderr
    service = done.stdout.split("PARK_MQTT_URL=mqtt://parkfleet-service:")[1].split("@")[0]
    wall = done.stdout.split("dashboard wall ")[1].split()[0]
    argv = seen.read_text()
    assert argv and service not in argv and wall not in argv
    stored = passwd.read_text()
    assert service not in stored and wall not in stored
    assert [line.split(":")[0] for line in stored.splitlines()] == ["parkfleet-service", "wall"]
    assert all(line.split(":", 1)[1].startswith("$7$") for line in stored.splitlines())
