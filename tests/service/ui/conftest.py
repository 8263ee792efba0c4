"""A real service with an admin, a viewer, a lot with a capacity and boards (one named like an
XSS probe), and Debian's Chromium under Playwright."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from provisioning.service.auth.secrets import SecretHasher
from provisioning.service.registry import service as registry
from provisioning.store.db import make_engine, migrate, session_factory
from tools.harness.browser import ARGS, chromium_path
from tools.harness.server import ServiceProcess

XSS_NAME = "<img src=x onerror=alert(1)>"
REPO = Path(__file__).resolve().parents[3]


@dataclass
class Fleet:
    server: ServiceProcess
    admin: tuple[str, str]
    viewer: tuple[str, str]
    boards: dict[str, tuple[str, str]]  # name -> (client_id, secret)
    screenshots: Path
    last: dict[str, int] = field(default_factory=dict)  # board name -> its latest count

    def device_token(self, name: str) -> str:
        client_id, secret = self.boards[name]
        with self.server.client() as http:
            response = http.post(
                "/oauth/token", data={"grant_type": "client_credentials"}, auth=(client_id, secret)
            )
            response.raise_for_status()
            return str(response.json()["access_token"])

    def post(self, token: str, seq: int, cars: int, health: dict[str, Any] | None = None) -> int:
        body: dict[str, Any] = {"readings": [{"seq": seq, "cars": cars}]}
        if health is not None:
            body["health"] = health
        with self.server.client() as http:
            response = http.post(
                "/v1/counts", json=body, headers={"Authorization": f"Bearer {token}"}
            )
            return response.status_code


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    data = tmp_path_factory.mktemp("ui") / "data"
    data.mkdir()
    url = f"sqlite:///{data / 'parkfleet.db'}"
    migrate(url)
    engine = make_engine(url)
    hasher = SecretHasher.from_data_dir(data)
    with session_factory(engine)() as session:
        admin, admin_secret = registry.create_operator(session, hasher, "test", "ops")
        viewer, viewer_secret = registry.create_operator(session, hasher, "test", "wall", "viewer")
        boards = {}
        for lot, name in (("north", "north-gate"), ("north", XSS_NAME), ("south", "south-1")):
            client, secret = registry.create_device(session, hasher, "test", lot, name)
            boards[name] = (client.client_id, secret)
    engine.dispose()
    # Room for every sign-in of the module; the limit itself is tested with the defaults.
    env = {**os.environ, "PARK_TOKEN_RATE_BURST": "200"}
    # Artifacts for CI to keep (build/ is ignored by git); PARK_SCREENSHOTS=docs refreshes
    # the ones the README and docs/dashboard.md show.
    shots = Path(os.environ.get("PARK_SCREENSHOTS") or REPO / "build" / "screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    with ServiceProcess(data, env=env) as server:
        admin_token = httpx.post(
            f"{server.url}/oauth/token",
            data={"grant_type": "client_credentials", "audience": "parkfleet-admin"},
            auth=(admin.client_id, admin_secret),
        ).json()["access_token"]
        created = httpx.post(
            f"{server.url}/admin/lots",
            json={"name": "north", "capacity": 40, "label": "North car park"},
            headers={"Authorization": f"Bearer {admin_token}"},
        )
        assert created.status_code == 201, created.text
        fleet = Fleet(
            server,
            (admin.client_id, admin_secret),
            (viewer.client_id, viewer_secret),
            boards,
            shots,
        )
        _seed_history(fleet)
        yield fleet


def _seed_history(fleet: Fleet) -> None:
    """A day of readings from two boards, by their clocks, posted as a board posts a backlog:
    the charts have a history to draw."""
    now = time.time()
    for n, name in enumerate(("north-gate", XSS_NAME)):
        token = fleet.device_token(name)
        readings = [
            {"seq": 1 + k, "cars": int(9 + 8 * math.sin(k / 40 + n) + 3 * n),
             "ts": now - 86400 + k * 600}
            for k in range(140)
        ]  # fmt: skip
        with fleet.server.client() as http:
            response = http.post(
                "/v1/counts", json={"readings": readings},
                headers={"Authorization": f"Bearer {token}"},
            )  # fmt: skip
            assert response.status_code == 200, response.text
        fleet.last[name] = int(readings[-1]["cars"])


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    executable = chromium_path()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        launched = pw.chromium.launch(executable_path=executable, args=ARGS)
        yield launched
        launched.close()
