"""`parkctl admin ...` and `parkctl device ...` (being built)."""

from __future__ import annotations

import typer

admin_app = typer.Typer(help="Operator clients.", no_args_is_help=True)
device_app = typer.Typer(help="Devices in the registry.", no_args_is_help=True)
