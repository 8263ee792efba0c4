"""Register OAuth clients straight into a service's database (before or while it runs)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy.orm import Session

from provisioning.service.auth.secrets import SecretHasher
from provisioning.service.registry import service as registry
from provisioning.store.db import make_engine, migrate, session_factory


@contextmanager
def _registry(data_dir: Path, db: str | None) -> Iterator[tuple[Session, SecretHasher]]:
    """A session on the (migrated) database and the data dir's secret-hash key."""
    url = db or f"sqlite:///{data_dir / 'parkfleet.db'}"
    data_dir.mkdir(parents=True, exist_ok=True)
    migrate(url)
    engine = make_engine(url)
    try:
        with session_factory(engine)() as session:
            yield session, SecretHasher.from_data_dir(data_dir)
    finally:
        engine.dispose()


def register_devices(
    data_dir: Path, count: int = 1, lot: str = "lot-1", db: str | None = None
) -> list[tuple[str, str]]:
    """`count` devices as (client_id, client_secret), hashed with the data dir's key."""
    with _registry(data_dir, db) as (session, hasher):
        created = [
            registry.create_device(session, hasher, "test", lot, f"board-{n}") for n in range(count)
        ]
        return [(client.client_id, secret) for client, secret in created]


def register_operator(data_dir: Path, db: str | None = None) -> tuple[str, str]:
    """An operator (admin API) as (client_id, client_secret), hashed with the data dir's key."""
    with _registry(data_dir, db) as (session, hasher):
        client, secret = registry.create_operator(session, hasher, "test", "ops")
        return client.client_id, secret


def create_viewer(data_dir: Path, name: str = "wall") -> tuple[str, str]:
    """A viewer operator made the way an operator makes one (`parkctl admin create --role
    viewer`); its (client_id, client_secret)."""
    made = subprocess.run(
        [sys.executable, "-m", "provisioning", "admin", "create", "--data-dir", str(data_dir),
         "--init", "--role", "viewer", "--name", name, "--json"],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    viewer = json.loads(made.stdout)
    return viewer["client_id"], viewer["client_secret"]
