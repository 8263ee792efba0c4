"""`parkctl lot create|set|list|show|delete`: lot records over the admin API (issue 11).

Like `parkctl device`, it runs as the operator in `PARK_CLIENT_ID` / `PARK_CLIENT_SECRET`
against `PARK_SERVER`, so every change gets the admin API's checks and audit trail.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer

from provisioning.errors import ParkctlError
from provisioning.registry.cli import AsJson, CaCert, Server, _client, _out, _print_json, _table
from provisioning.registry.schemas import LotRecord

lot_app = typer.Typer(
    help="Lot records: capacity and label (over the admin API).", no_args_is_help=True
)

LotName = Annotated[str, typer.Argument(help="The lot id devices are registered with.")]


def _capacity(text: str | None) -> int | str | None:
    """`--capacity 120` -> 120, `--capacity none` -> None (clear), absent -> "" (keep)."""
    if text is None:
        return ""
    if text.lower() in ("none", "-", ""):
        return None
    try:
        return int(text)
    except ValueError:
        raise ParkctlError(f"--capacity must be a whole number or 'none', not {text!r}") from None


def _show(lot: LotRecord, as_json: bool, what: str | None = None) -> None:
    if as_json:
        _print_json(lot.model_dump(mode="json"))
        return
    capacity = "-" if lot.capacity is None else str(lot.capacity)
    if what:
        _out().print(f"Lot [bold]{lot.name}[/bold] {what} (capacity {capacity}, {lot.label!r}).")
        return
    table = _table("field", "value")
    for key, value in (
        ("name", lot.name),
        ("label", lot.label),
        ("capacity", capacity),
        ("updated", time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(lot.updated_at))),
    ):
        table.add_row(key, value)
    _out().print(table)


@lot_app.command("create")
def lot_create(
    name: LotName,
    capacity: Annotated[
        int | None, typer.Option(min=0, help="Spaces in the lot (shows free spaces).")
    ] = None,
    label: Annotated[str | None, typer.Option(help="What people read [default: the id].")] = None,
    server: Server = None,
    ca_cert: CaCert = None,
    as_json: AsJson = False,
) -> None:
    """Give a lot a record with its capacity and label."""
    with _client(server, ca_cert) as api:
        lot = api.create_lot(name, capacity, label)
    _show(lot, as_json, "created")


@lot_app.command("set")
def lot_set(
    name: LotName,
    capacity: Annotated[
        str | None, typer.Option(help="Spaces in the lot; 'none' clears it.")
    ] = None,
    label: Annotated[str | None, typer.Option(help="A new label.")] = None,
    server: Server = None,
    ca_cert: CaCert = None,
    as_json: AsJson = False,
) -> None:
    """Change a lot's capacity and/or label."""
    changes: dict[str, Any] = {}
    parsed = _capacity(capacity)
    if parsed != "":
        changes["capacity"] = parsed
    if label is not None:
        changes["label"] = label
    if not changes:
        raise ParkctlError("nothing to change: give --capacity and/or --label")
    with _client(server, ca_cert) as api:
        lot = api.update_lot(name, changes)
    _show(lot, as_json, "updated")


@lot_app.command("list")
def lot_list(server: Server = None, ca_cert: CaCert = None, as_json: AsJson = False) -> None:
    """Every lot record."""
    with _client(server, ca_cert) as api:
        items = api.list_lots().items
    if as_json:
        _print_json([lot.model_dump(mode="json") for lot in items])
        return
    table = _table("name", "capacity", "label")
    for lot in items:
        table.add_row(lot.name, "-" if lot.capacity is None else str(lot.capacity), lot.label)
    out = _out()
    out.print(table)
    out.print(f"{len(items)} lot(s)")


@lot_app.command("show")
def lot_show(
    name: LotName, server: Server = None, ca_cert: CaCert = None, as_json: AsJson = False
) -> None:
    """One lot record."""
    with _client(server, ca_cert) as api:
        lot = api.get_lot(name)
    _show(lot, as_json)


@lot_app.command("delete")
def lot_delete(
    name: LotName, server: Server = None, ca_cert: CaCert = None, as_json: AsJson = False
) -> None:
    """Drop a lot's record; its devices and readings stay and it works as before."""
    with _client(server, ca_cert) as api:
        api.delete_lot(name)
    if as_json:
        _print_json({"name": name, "deleted": True})
    else:
        _out().print(f"Lot [bold]{name}[/bold]'s record deleted.")
