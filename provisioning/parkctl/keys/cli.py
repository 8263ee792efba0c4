"""`parkctl keys rotate|list`: the command line only; the work is in `auth.commands`."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

from provisioning.parkctl.verbs import Parser, Verbs


def _commands() -> ModuleType:
    from provisioning.parkctl.keys import commands

    return commands


def keys_verbs(parkctl: Verbs) -> None:
    """`parkctl keys ...`: run on the server host (the private keys and the database)."""
    keys = parkctl.group("keys", "Manage the JWT signing keys.")
    _store_options(
        keys.verb(
            "rotate",
            lambda: _commands().rotate,
            "Publish a new signing key; the server signs with it once verifiers have fetched it.",
        )
    )
    _store_options(
        keys.verb(
            "list",
            lambda: _commands().list_keys,
            "Show every signing key and where it is in its life cycle.",
        )
    )


def _store_options(cmd: Parser) -> None:
    cmd.add_argument("--db", help="SQLAlchemy URL (default: SQLite).")
    cmd.add_argument("--data-dir", type=Path, help="Data directory of the server.")
    cmd.add_argument("--json", dest="as_json", action="store_true", help="Machine-readable output.")
