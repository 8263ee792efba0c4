"""`parkctl serve --workers 2` on PostgreSQL: posts spread over both workers are each stored
exactly once, and a repeated post is a duplicate whichever worker takes it."""

from __future__ import annotations

from pathlib import Path

import httpx
from sqlalchemy import text

from provisioning.store.db import make_engine
from tools.harness.clients import register_devices
from tools.harness.server import ServiceProcess

CLOSE = {"Connection": "close"}  # a new connection per post: the kernel spreads them


def _token(http: httpx.Client, creds: tuple[str, str]) -> str:
    form = {"grant_type": "client_credentials"}
    response = http.post("/oauth/token", data=form, auth=creds, headers=CLOSE)
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def test_two_workers_store_each_reading_once(tmp_path: Path, pg_url: str) -> None:
    devices = register_devices(tmp_path, count=4, db=pg_url)
    with (
        ServiceProcess(tmp_path, db=pg_url, extra_args=["--workers", "2"]) as service,
        service.client() as http,
    ):
        tokens = [_token(http, creds) for creds in devices]
        posted = 0
        for seq in range(10):
            for token in tokens:
                batch = {
                    "readings": [{"seq": seq * 5 + i, "cars": i, "ts": 1.8e9} for i in range(5)]
                }
                auth = {"Authorization": f"Bearer {token}", **CLOSE}
                response = http.post("/v1/counts", json=batch, headers=auth)
                assert response.status_code == 200, response.text
                assert response.json() == {"accepted": 5, "duplicates": 0}
                posted += 5
        again = http.post(
            "/v1/counts",
            json={"readings": [{"seq": 0, "cars": 0, "ts": 1.8e9}]},
            headers={"Authorization": f"Bearer {tokens[0]}", **CLOSE},
        )
        assert again.json() == {"accepted": 0, "duplicates": 1}
    assert service.log().count("Started server process") == 2
    engine = make_engine(pg_url)
    try:
        with engine.connect() as conn:
            stored = conn.execute(text("SELECT count(*) FROM readings")).scalar_one()
    finally:
        engine.dispose()
    assert stored == posted == 200
