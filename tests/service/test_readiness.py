"""`GET /readyz`: a busy instance is still ready (an unreachable database: test_store_outage)."""

from __future__ import annotations

import time
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import Connection

from provisioning.service.app import create_app
from tests.service.auth.conftest import make_settings


def test_ready_at_once_while_requests_hold_every_pooled_connection(
    tmp_path: Path, db_url: str
) -> None:
    # A load balancer that saw a busy instance as unready would take it out and pile its load
    # onto the others, until every instance is out (the soak's boot storm did that).
    with TestClient(create_app(make_settings(tmp_path, db=db_url))) as http:
        engine = http.app.state.ctx.engine  # type: ignore[attr-defined]
        held: list[Connection] = []
        try:
            size = engine.pool.size() + engine.pool._max_overflow - engine.pool.checkedout()
            held = [engine.connect() for _ in range(size)]
            started = time.monotonic()
            answer = http.get("/readyz")
            took = time.monotonic() - started
        finally:
            for conn in held:
                conn.close()
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"status": "ready", "degraded": []}
        assert took < 1.0
