"""Fixtures for the admin API: the whole app in-process, an operator and its tokens."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from provisioning.service.app import create_app
from provisioning.service.config import Settings
from provisioning.service.registry import service


@dataclass
class Operator:
    client_id: str
    client_secret: str


@dataclass
class AdminApp:
    http: TestClient
    settings: Settings
    operator: Operator

    def token(self, client_id: str, secret: str, audience: str | None = None) -> str:
        data = {"grant_type": "client_credentials", **({"audience": audience} if audience else {})}
        response = self.http.post("/oauth/token", data=data, auth=(client_id, secret))
        assert response.status_code == 200, response.text
        return str(response.json()["access_token"])

    def register(self, headers: dict[str, str], **device: str) -> httpx.Response:
        """POST /admin/devices with `device` (lot, name, mac) as the JSON body."""
        response: httpx.Response = self.http.post("/admin/devices", json=device, headers=headers)
        return response

    def headers(self) -> dict[str, str]:
        op = self.operator
        token = self.token(op.client_id, op.client_secret, "parkfleet-admin")
        return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def admin_app(tmp_path: Path) -> Iterator[AdminApp]:
    """The real app (token endpoint, verifier, admin API) on SQLite with one operator."""
    settings = Settings(data_dir=tmp_path / "data", secret_grace_s=3600)
    app = create_app(settings)
    ctx = app.state.ctx
    with ctx.sessions() as session:
        client, secret = service.create_operator(session, ctx.hasher, "test", "ops")
    with TestClient(app) as http:
        yield AdminApp(http, settings, Operator(client.client_id, secret))
