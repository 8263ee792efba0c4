"""`parkctl board ...`, `parkctl provision`, `parkctl fleet ...` (being built)."""

from __future__ import annotations

import typer

board_app = typer.Typer(help="One board on a serial port.", no_args_is_help=True)
fleet_app = typer.Typer(help="Many boards from a manifest.", no_args_is_help=True)


def provision_command() -> None:
    """Register, flash, install and verify one board."""
    raise typer.Exit(2)
