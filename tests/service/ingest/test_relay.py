"""The relay with several instances on one PostgreSQL database, and readiness without one."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from provisioning.service.app import create_app
from provisioning.store.db import make_engine
from tests.service.auth.conftest import make_settings
from tests.service.ingest.test_mqtt import depth, metric, seqs
from tools.harness.clients import register_devices
from tools.harness.mosquitto import MosquittoBroker, Received, Subscriber
from tools.harness.server import ServiceProcess
from tools.harness.services import PG_ADMIN_URL

pytestmark = pytest.mark.mosquitto
LOT = "shared"


def relay_state(proc: ServiceProcess) -> tuple[float, float]:
    """(relay_active, published_total) from the instance's /metrics."""
    text_ = httpx.get(f"{proc.url}/metrics", timeout=10).text
    return (
        metric(text_, "parkfleet_mqtt_relay_active"),
        metric(text_, "parkfleet_mqtt_published_total"),
    )


def wait_for_one_relay(procs: list[ServiceProcess], timeout: float = 15) -> ServiceProcess:
    deadline = time.monotonic() + timeout
    while True:
        active = [p for p in procs if relay_state(p)[0] == 1.0]
        if len(active) == 1:
            return active[0]
        assert len(active) < 2, "two instances relay at once"
        assert time.monotonic() < deadline, "no instance took the relay role"
        time.sleep(0.1)


def test_one_relay_per_database_and_another_takes_over(
    tmp_path: Path, pg_url: str, broker: MosquittoBroker
) -> None:
    data_dir = tmp_path / "data"
    creds = register_devices(data_dir, 4, LOT, db=pg_url)
    # One issuer for both, as behind a load balancer.
    args = ["--issuer", "https://park.example", "--log-level", "warning"]
    env = {"PARK_MQTT_URL": broker.url(), "PARK_METRICS_PUBLIC": "1"}  # no password in argv
    one = ServiceProcess(data_dir, db=pg_url, extra_args=args, env=env).start()
    two = ServiceProcess(data_dir, db=pg_url, extra_args=args, env=env).start()
    try:
        with Subscriber(broker, persistent=True) as watcher, one.client() as h1, two.client() as h2:
            watcher.wait_subscribed()
            tokens = []
            for client_id, secret in creds:
                answer = h1.post(
                    "/oauth/token",
                    data={"grant_type": "client_credentials"},
                    auth=(client_id, secret),
                )
                tokens.append(answer.json()["access_token"])
            relay = wait_for_one_relay([one, two])
            standby = two if relay is one else one

            def post_round(http: httpx.Client, start: int) -> None:
                for token in tokens:
                    body = {
                        "readings": [
                            {"seq": s, "cars": 1, "ts": None} for s in range(start, start + 5)
                        ]
                    }
                    r = http.post(
                        "/v1/counts", json=body, headers={"Authorization": f"Bearer {token}"}
                    )
                    assert r.status_code == 200, r.text

            for n in range(10):  # posts reach both instances; one relay publishes them all
                post_round(h1 if n % 2 else h2, n * 5)
            watcher.wait_until(lambda ms: all(len(seqs(ms, LOT, c)) >= 50 for c, _ in creds), 30)
            assert relay_state(standby) == (0.0, 0.0)  # the standby never published
            survivor = h2 if relay is one else h1
            relay.stop(signal.SIGKILL)  # dies without a goodbye: its lock goes with its session
            for n in range(10, 20):
                post_round(survivor, n * 5)
            assert wait_for_one_relay([standby], timeout=15) is standby
            got: list[Received] = watcher.wait_until(
                lambda ms: all(set(seqs(ms, LOT, c)) == set(range(100)) for c, _ in creds), 30
            )
        engine = make_engine(pg_url)
        try:
            deadline = time.monotonic() + 10
            while depth(engine):
                assert time.monotonic() < deadline, "the outbox did not drain"
                time.sleep(0.05)
        finally:
            engine.dispose()
    finally:
        one.stop()
        two.stop()
    for client_id, _secret in creds:  # repeats allowed (at least once), gaps and reordering not
        assert list(dict.fromkeys(seqs(got, LOT, client_id))) == list(range(100))
    totals = [json.loads(m.payload)["cars"] for m in got if m.topic == f"parking/{LOT}/occupancy"]
    assert totals[-1] == 4


def test_readyz_is_503_while_the_database_is_unreachable(tmp_path: Path, pg_url: str) -> None:
    with TestClient(create_app(make_settings(tmp_path / "data", db=pg_url))) as http:
        assert http.get("/readyz").json() == {"status": "ready", "degraded": []}
        admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        name = pg_url.rsplit("/", 1)[1]
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        admin.dispose()
        answer = http.get("/readyz")
        assert answer.status_code == 503
        assert answer.json() == {"status": "unavailable", "unavailable": ["database"]}
        assert http.get("/healthz").status_code == 200  # alive, just not ready
