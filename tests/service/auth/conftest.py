"""Fixtures for the authorization server tests: an in-process app and clients in its registry."""

from __future__ import annotations

import base64
import itertools
import json
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from provisioning.service.app import create_app
from provisioning.service.config import Settings
from provisioning.service.context import ServiceContext
from provisioning.service.registry import service as registry

ISSUER = "http://testserver"


def make_settings(data_dir: Path, db: str | None = None, **overrides: Any) -> Settings:
    """Settings for an in-process app; `db` None means SQLite in `data_dir`."""
    return Settings(data_dir=data_dir, db=db, issuer=ISSUER, **overrides)


class Auth:
    """An in-process service plus helpers to register clients and ask for tokens."""

    def __init__(self, http: TestClient) -> None:
        self.http = http
        self.app: FastAPI = http.app  # type: ignore[assignment]
        self.ctx: ServiceContext = self.app.state.ctx

    def device(self, lot: str = "lot-1", name: str = "board") -> tuple[str, str]:
        with self.ctx.sessions() as session:
            client, secret = registry.create_device(session, self.ctx.hasher, "test", lot, name)
            return client.client_id, secret

    def operator(self, name: str = "ops") -> tuple[str, str]:
        with self.ctx.sessions() as session:
            client, secret = registry.create_operator(session, self.ctx.hasher, "test", name)
            return client.client_id, secret

    def token_response(self, client_id: str, secret: str, **params: str) -> Any:
        return self.http.post(
            "/oauth/token",
            data={"grant_type": "client_credentials", **params},
            auth=(client_id, secret),
        )

    def token(self, client_id: str, secret: str, **params: str) -> str:
        response = self.token_response(client_id, secret, **params)
        assert response.status_code == 200, response.text
        return str(response.json()["access_token"])


def jwt_parts(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and claims of a JWT, unverified (for assertions only)."""

    def part(segment: str) -> dict[str, Any]:
        decoded: dict[str, Any] = json.loads(
            base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
        )
        return decoded

    header, claims, _sig = token.split(".")
    return part(header), part(claims)


MakeAuth = Callable[..., Auth]


@pytest.fixture
def make_auth(tmp_path: Path) -> Iterator[MakeAuth]:
    """Build in-process services with settings overrides (`db=` picks the database)."""
    serial = itertools.count()
    with ExitStack() as stack:

        def make(db: str | None = None, **overrides: Any) -> Auth:
            settings = make_settings(tmp_path / f"data{next(serial)}", db, **overrides)
            return Auth(stack.enter_context(TestClient(create_app(settings))))

        yield make


@pytest.fixture
def auth(make_auth: MakeAuth) -> Auth:
    """The service on SQLite, in-process, with the default limits."""
    return make_auth()


@pytest.fixture
def auth_any_db(make_auth: MakeAuth, db_url: str) -> Auth:
    """The service in-process on SQLite and on PostgreSQL."""
    return make_auth(db=db_url)
