"""Fixtures of the ingestion tests: a migrated database with registered devices."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from provisioning.service.auth.secrets import SecretHasher
from provisioning.service.registry import service
from provisioning.store.db import make_engine, migrate, session_factory
from tools.harness.mosquitto import MosquittoBroker

ACTOR = "op_test"


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """A migrated database on SQLite and on PostgreSQL."""
    migrate(db_url)
    engine = make_engine(db_url)
    yield engine
    engine.dispose()


@pytest.fixture
def make_device(engine: Engine) -> Callable[[str], str]:
    """Register a device in a lot through the registry; returns its client_id."""
    hasher = SecretHasher(b"k" * 32)

    def make(lot: str) -> str:
        with session_factory(engine)() as session:
            client, _secret = service.create_device(session, hasher, ACTOR, lot, "board")
            return client.client_id

    return make


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[MosquittoBroker]:
    """Mosquitto from broker-config/ on a free port, with two dashboard accounts."""
    with MosquittoBroker(tmp_path / "broker", dashboards=("dashboard", "wallboard")) as b:
        yield b
