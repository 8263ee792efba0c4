"""What `parkctl lot create|set|list|show|delete|recount` run: lot records and
recounts over the admin API.

Like `parkctl device`, it runs as the operator in `PARK_CLIENT_ID` / `PARK_CLIENT_SECRET`
against `PARK_SERVER`, so every change gets the admin API's checks and audit trail.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from provisioning.common.admin_schemas import LotRecord
from provisioning.common.errors import ParkctlError
from provisioning.common.rules import check_lot
from provisioning.parkctl.registry.commands import admin_client, deleted
from provisioning.parkctl.registry.render import console, list_table, print_json, print_rows


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


def _show(
    lot: LotRecord, as_json: bool, what: str | None = None, now: dict[str, Any] | None = None
) -> None:
    if as_json:
        shown = lot.model_dump(mode="json")
        if now is not None:
            shown["occupancy"] = {
                "cars": now["cars"], "boards": len(now.get("devices", [])),
                **({"free": now["free"]} if "free" in now else {}),
            }  # fmt: skip
        print_json(shown)
        return
    capacity = "-" if lot.capacity is None else str(lot.capacity)
    if what:
        console().print(f"Lot [bold]{lot.name}[/bold] {what} (capacity {capacity}, {lot.label!r}).")
        return
    table = list_table("field", "value")
    for key, value in (
        ("name", lot.name),
        ("label", lot.label),
        ("capacity", capacity),
        ("updated", time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(lot.updated_at))),
        *_occupancy_rows(lot, now),
    ):
        table.add_row(key, value)
    console().print(table)


def _occupancy_rows(lot: LotRecord, now: dict[str, Any] | None) -> list[tuple[str, str]]:
    """Cars now, free spaces and the share of the capacity taken (GET /v1/lots/{lot})."""
    if now is None:
        return [("cars", "no boards or recount yet")]
    cars = int(now["cars"])
    rows = [("cars", str(cars)), ("boards", str(len(now.get("devices", []))))]
    if lot.capacity:
        full = " (full)" if cars >= lot.capacity else ""
        rows += [
            ("free", str(now.get("free", max(0, lot.capacity - cars)))),
            ("occupancy", f"{min(cars / lot.capacity, 1.0):.0%}{full}"),
        ]
    return rows


def lot_create(
    name: str,
    capacity: int | None,
    label: str | None,
    server: str | None,
    ca_cert: Path | None,
    as_json: bool,
) -> None:
    """Give a lot a record with its capacity and label."""
    with admin_client(server, ca_cert) as api:
        lot = api.create_lot(name, capacity, label)
    _show(lot, as_json, "created")


def lot_set(
    name: str,
    capacity: str | None,
    label: str | None,
    server: str | None,
    ca_cert: Path | None,
    as_json: bool,
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
    with admin_client(server, ca_cert) as api:
        lot = api.update_lot(name, changes)
    _show(lot, as_json, "updated")


def lot_list(server: str | None, ca_cert: Path | None, as_json: bool) -> None:
    """Every lot record."""
    with admin_client(server, ca_cert) as api:
        items = api.list_lots().items
    print_rows(items, as_json, ("name", "capacity", "label"), _lot_row, "lot")


def _lot_row(lot: LotRecord) -> tuple[str, ...]:
    return lot.name, "-" if lot.capacity is None else str(lot.capacity), lot.label


def lot_show(name: str, server: str | None, ca_cert: Path | None, as_json: bool) -> None:
    """One lot record and its occupancy now."""
    with admin_client(server, ca_cert) as api:
        lot = api.get_lot(name)
        now = api.occupancy(name)
    _show(lot, as_json, now=now)


def lot_delete(name: str, server: str | None, ca_cert: Path | None, as_json: bool) -> None:
    """Drop a lot's record; its devices and readings stay and it works as before."""
    with admin_client(server, ca_cert) as api:
        api.delete_lot(name)
    deleted("name", name, f"Lot [bold]{name}[/bold]'s record deleted.", as_json)


def lot_recount(
    name: str, cars: int, server: str | None, ca_cert: Path | None, as_json: bool
) -> None:
    """Set a lot's baseline to the cars counted now; gate boards' flows count from here."""
    try:
        check_lot(name)  # here: a name with "/" would never reach the route
    except ValueError as error:
        raise ParkctlError(str(error)) from None
    with admin_client(server, ca_cert) as api:
        result = api.recount_lot(name, cars)
    if as_json:
        print_json(result.model_dump(mode="json"))
        return
    console().print(
        f"Lot [bold]{name}[/bold] recounted: {result.cars} car(s) from now "
        f"(was {result.previous}); {len(result.counters)} gate board(s) count from here."
    )
