"""`parkctl keys ...` (being built)."""

from __future__ import annotations

import typer

keys_app = typer.Typer(help="Manage the JWT signing keys.", no_args_is_help=True)
