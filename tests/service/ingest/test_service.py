"""End to end: `parkctl serve --mqtt ...` as a real process, a real Mosquitto, real sockets."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import httpx
import pytest

from provisioning.common.scopes import COUNTS_READ, INGEST_AUDIENCE
from provisioning.service.auth.secrets import SecretHasher
from provisioning.service.registry import service as registry
from provisioning.store.db import make_engine, session_factory
from tools.harness.clients import register_devices
from tools.harness.mosquitto import MosquittoBroker, Subscriber
from tools.harness.server import ServiceProcess

pytestmark = pytest.mark.mosquitto


def register(data_dir: Path) -> tuple[tuple[str, str], tuple[str, str]]:
    """A device in lot `gate-7` and an operator, written into the service's database."""
    (device,) = register_devices(data_dir, 1, "gate-7")
    engine = make_engine(f"sqlite:///{data_dir / 'parkfleet.db'}")
    with session_factory(engine)() as session:
        op, secret = registry.create_operator(
            session, SecretHasher.from_data_dir(data_dir), "test", "ops"
        )
        operator = (op.client_id, secret)
    engine.dispose()
    return device, operator


def token(http: httpx.Client, creds: tuple[str, str], **params: str) -> str:
    response = http.post(
        "/oauth/token", data={"grant_type": "client_credentials", **params}, auth=creds
    )
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def test_serve_with_mqtt_end_to_end(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    device, operator = register(data_dir)
    with (
        MosquittoBroker(tmp_path / "broker") as broker,
        ServiceProcess(data_dir, env={"PARK_MQTT_URL": broker.url()}) as proc,
        proc.client() as http,
        Subscriber(broker) as watcher,
    ):
        watcher.wait_subscribed()
        write = {"Authorization": f"Bearer {token(http, device)}"}
        body = {"readings": [{"seq": s, "cars": 10 + s, "ts": 1.8e9 + s} for s in range(3)]}
        response = http.post("/v1/counts", json=body, headers=write)
        assert response.json() == {"accepted": 3, "duplicates": 0}, proc.log()
        (batch,) = watcher.wait_for(1, topic_prefix=f"parking/gate-7/devices/{device[0]}/")
        (total,) = watcher.wait_for(1, topic_prefix="parking/gate-7/occupancy")
        readings = json.loads(batch.payload)["readings"]
        assert [r["cars"] for r in readings] == [10, 11, 12], broker.log()
        assert json.loads(total.payload)["cars"] == 12 and total.retain is False  # live copy
        read = token(http, operator, audience=INGEST_AUDIENCE, scope=COUNTS_READ)
        lot = http.get("/v1/lots/gate-7", headers={"Authorization": f"Bearer {read}"}).json()
        assert lot["cars"] == 12
        assert_oversized_chunked_body_is_refused_early(proc.port, write["Authorization"])


def assert_oversized_chunked_body_is_refused_early(port: int, authorization: str) -> None:
    """413 arrives while the client is still sending: the server never buffers it whole."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            b"POST /v1/counts HTTP/1.1\r\nHost: localhost\r\n"
            + f"Authorization: {authorization}\r\n".encode()
            + b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        chunk = b" " * 8192
        for _ in range(10):  # 80 KB sent, the body never terminated
            sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        status_line = sock.recv(4096).split(b"\r\n", 1)[0]
    assert status_line == b"HTTP/1.1 413 Request Entity Too Large", status_line
