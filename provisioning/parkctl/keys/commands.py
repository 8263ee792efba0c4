"""`parkctl keys rotate|list`: JWT signing keys, run on the server host (they need the data
directory, where the private keys live, and the database). Options are parsed in `auth.cli`."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Column, Table

from provisioning.common.errors import ParkctlError
from provisioning.parkctl.hostdb import open_store
from provisioning.service.auth.keys import KeyStore
from provisioning.service.config import Settings, from_flags


@contextmanager
def _key_store(db: str | None, data_dir: Path | None) -> Iterator[tuple[KeyStore, Settings]]:
    settings = from_flags({"db": db, "data_dir": data_dir})
    with open_store(settings) as sessions:
        yield KeyStore.from_settings(settings, sessions), settings


def rotate(db: str | None, data_dir: Path | None, as_json: bool) -> None:
    """Publish a new signing key; the server signs with it once verifiers have fetched it."""
    with _key_store(db, data_dir) as (store, settings):
        try:
            kid = store.rotate()
        except ValueError as error:
            raise ParkctlError(str(error)) from None
        active_after = time.time() + settings.key_publish_delay_s
    if as_json:
        print(json.dumps({"kid": kid, "status": "next", "active_after": active_after}))
        return
    Console().print(
        f"published key [bold]{kid}[/bold]; it starts signing after "
        f"{settings.key_publish_delay_s:.0f} s (the old key stays published until its "
        "tokens have expired)"
    )


def list_keys(db: str | None, data_dir: Path | None, as_json: bool) -> None:
    """Show every signing key and where it is in its life cycle."""
    with _key_store(db, data_dir) as (store, _settings):
        rows: list[dict[str, Any]] = [
            {
                "kid": key.kid,
                "alg": key.alg,
                "status": key.status,
                "created_at": key.created_at,
                "activated_at": key.activated_at,
                "retire_after": key.retire_after,
            }
            for key in store.list_keys()
        ]
    if as_json:
        print(json.dumps(rows))
        return
    table = Table("alg", "status", "created", "activated", "published until")
    table.columns.insert(0, Column("kid", no_wrap=True))
    for row in rows:
        table.add_row(
            row["kid"],
            row["alg"],
            row["status"],
            _when(row["created_at"]),
            _when(row["activated_at"]),
            _when(row["retire_after"]),
        )
    Console().print(table)


def _when(epoch: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch)) if epoch else "-"
