"""Crash reports and vitals through the ingestion API, `GET /admin/devices/{id}`, the
per-release health endpoint and the dashboard's pages."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from provisioning.common.scopes import ADMIN_AUDIENCE, DEVICES_ADMIN
from provisioning.service.app import create_app
from provisioning.service.auth.secrets import SecretHasher
from provisioning.service.registry import service as registry
from provisioning.store.db import make_engine, migrate, session_factory
from tests.service.auth.conftest import Auth, make_settings
from tests.service.ui.test_session import _sign_in
from tools.harness.clients import register_operator
from tools.harness.parkctl import parkctl
from tools.harness.server import ServiceProcess

TRACEBACK = 'Traceback (most recent call last):\n  File "uplink.py", line 9\nValueError: <b>&x'
CRASH = {"version": "1.1.0", "count": 3, "cause": "exception", "traceback": TRACEBACK}
VITALS = {"uptime_s": 40, "free_heap": 30000, "heap_min": 21000, "heap_block": 9000,
          "rssi": -61, "rssi_min": -70, "wifi_drops": 1, "token_fails": 0, "post_fails": 2,
          "spool_depth": 0, "interval_s": 1}  # fmt: skip


@pytest.fixture
def api(tmp_path: Path, db_url: str) -> Iterator[Auth]:
    with TestClient(create_app(make_settings(tmp_path / "data", db_url))) as http:
        yield Auth(http)


def _post(api: Auth, token: str, seq: int, **extra: Any) -> httpx.Response:
    body = {"readings": [{"seq": seq, "cars": 3}], **extra}
    return api.http.post("/v1/counts", json=body, headers={"Authorization": f"Bearer {token}"})


def test_crash_and_vitals_are_stored_with_the_running_version(api: Auth) -> None:
    dev, secret = api.device()
    token = api.token(dev, secret)
    op, op_secret = api.operator()
    admin = {"Authorization": "Bearer " + api.token(op, op_secret, audience=ADMIN_AUDIENCE,
                                                     scope=DEVICES_ADMIN)}  # fmt: skip
    assert _post(api, token, 0, agent={"version": "1.0.0"}).status_code == 200
    shown = api.http.get(f"/admin/devices/{dev}", headers=admin).json()
    assert shown["last_crash"] is None and shown["vitals"] is None
    done = _post(api, token, 1, health=VITALS, crash=CRASH)
    assert done.status_code == 200, done.text
    shown = api.http.get(f"/admin/devices/{dev}", headers=admin).json()
    crash = shown["last_crash"]
    assert crash["traceback"] == TRACEBACK and crash["version"] == "1.1.0"
    assert crash["count"] == 3 and crash["cause"] == "exception" and crash["running"] == "1.0.0"
    assert isinstance(crash["at"], float)
    assert shown["vitals"]["version"] == "1.0.0" and shown["vitals"]["heap_min"] == 21000
    assert shown["vitals"]["post_fails"] == 2
    # Per-release health: one board-step on 1.0.0, crashed (the report names 1.1.0 as the
    # version that crashed, so the crash counts for 1.1.0).
    doc = api.http.get("/admin/release-health?window_s=3600&step_s=600", headers=admin).json()
    rows = {r["version"]: r for r in doc["releases"]}
    assert rows["1.0.0"]["board_hours"] > 0 and rows["1.0.0"]["crash_free_rate"] == 1.0
    assert rows["1.1.0"]["crash_free_rate"] == 0.0 and rows["1.1.0"]["crashes"] == 3
    assert {r["lot"] for r in doc["lots"]} == {"lot-1"}
    too_many = api.http.get("/admin/release-health?window_s=86400&step_s=1", headers=admin)
    assert too_many.status_code == 422


@pytest.mark.parametrize(
    ("crash", "field"),
    [
        ({**CRASH, "cause": "gremlins"}, "cause"),
        ({**CRASH, "count": 0}, "count"),
        ({**CRASH, "version": "1.x"}, "version"),
        ({**CRASH, "traceback": "x" * 601}, "traceback"),
        ({**CRASH, "traceback": "a\x00b"}, "traceback"),
        ({**CRASH, "traceback": "a\x1b[2Jb"}, "traceback"),
        ({**CRASH, "extra": 1}, "extra"),
        ({k: v for k, v in CRASH.items() if k != "count"}, "count"),
        ("boom", None),
    ],
)
def test_a_bad_crash_report_is_a_422_and_stores_nothing(
    api: Auth, crash: Any, field: str | None
) -> None:
    dev, secret = api.device()
    token = api.token(dev, secret)
    refused = _post(api, token, 0, crash=crash)
    assert refused.status_code == 422, refused.text
    loc = refused.json()["detail"][0]["loc"]
    assert loc[:2] == ["body", "crash"] and (field is None or loc[2] == field), loc
    bad_vitals = _post(api, token, 0, health={"heap_min": -1})
    assert bad_vitals.status_code == 422
    with api.ctx.engine.connect() as conn:
        for table in ("readings", "crash_reports", "vitals"):
            assert conn.exec_driver_sql(f"SELECT count(*) FROM {table}").scalar() == 0


def test_the_board_page_shows_the_crash_as_text_and_the_vitals(tmp_path: Path) -> None:
    data = tmp_path / "data"
    who = register_operator(data)
    engine = make_engine(f"sqlite:///{data / 'parkfleet.db'}")
    migrate(f"sqlite:///{data / 'parkfleet.db'}")
    with session_factory(engine)() as session:
        client, secret = registry.create_device(
            session, SecretHasher.from_data_dir(data), "test", "north", "b1"
        )
    engine.dispose()
    with ServiceProcess(data) as server, server.client() as http:
        token = http.post(
            "/oauth/token", data={"grant_type": "client_credentials"},
            auth=(client.client_id, secret),
        ).json()["access_token"]  # fmt: skip
        auth = {"Authorization": f"Bearer {token}"}
        for seq in range(3):
            body = {"readings": [{"seq": seq, "cars": 1}], "agent": {"version": "1.0.0"},
                    "health": {**VITALS, "free_heap": 30000 - 100 * seq}}  # fmt: skip
            assert http.post("/v1/counts", json=body, headers=auth).status_code == 200
        body = {"readings": [{"seq": 3, "cars": 1}], "crash": CRASH}
        assert http.post("/v1/counts", json=body, headers=auth).status_code == 200
        assert _sign_in(http, who).status_code == 303
        page = http.get(f"/ui/boards/{client.client_id}")
        assert page.status_code == 200
        assert '<pre class="traceback">' in page.text
        assert "ValueError: &lt;b&gt;&amp;x" in page.text and "<b>&x" not in page.text
        assert "lowest free heap" in page.text and 'class="spark"' in page.text
        health = http.get("/ui/releases?range=1h")
        assert health.status_code == 200 and "<code>1.0.0</code>" in health.text
        assert "Canary against the rest" in health.text
        env = {**os.environ, "COLUMNS": "200", "PARK_SERVER": server.url,
               "PARK_CLIENT_ID": who[0], "PARK_CLIENT_SECRET": who[1],
               "PARK_CACHE_DIR": str(tmp_path / "cache")}  # fmt: skip
        shown = parkctl("device", "show", client.client_id, env=env)
        assert shown.returncode == 0, shown.stderr
        # Printed as text: the markup-like "<b>" and "[...]" a board sends stay as they are.
        assert "exception x3 on 1.1.0" in shown.stdout and "ValueError: <b>&x" in shown.stdout
        assert "heap_min=21000" in shown.stdout
