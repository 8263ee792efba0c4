"""The fleet manifest: a CSV file with one row per board (`port,lot,name[,wifi_ssid]`)."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from provisioning.common.errors import ParkctlError
from provisioning.common.rules import check_lot, check_name

REQUIRED_COLUMNS = ("port", "lot")
OPTIONAL_COLUMNS = ("name", "wifi_ssid")


@dataclass(frozen=True)
class BoardRow:
    """One board of the manifest. `line` is its line number in the file, for messages."""

    line: int
    port: str
    lot: str
    name: str
    wifi_ssid: str | None = None


def default_name(port: str, lot: str) -> str:
    """A readable default board name: the lot and the last part of the port."""
    tail = port.rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1]
    return f"{lot}-{tail}"


def read_manifest(path: Path) -> list[BoardRow]:
    """Parse and check the whole manifest before any board is touched."""
    try:
        text = path.read_text(encoding="utf-8-sig")  # spreadsheets save CSV with a BOM
    except OSError as error:
        raise ParkctlError(f"cannot read manifest {path}: {error.strerror}") from None
    reader = csv.DictReader(
        line for line in text.splitlines() if line.strip() and not line.startswith("#")
    )
    columns = [c.strip() for c in reader.fieldnames or []]
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise ParkctlError(f"{path}: missing column(s) {', '.join(missing)} in the header line")
    unknown = [c for c in columns if c not in REQUIRED_COLUMNS + OPTIONAL_COLUMNS]
    if unknown:
        raise ParkctlError(f"{path}: unknown column(s) {', '.join(unknown)}")
    rows: list[BoardRow] = []
    seen: dict[str, int] = {}
    for number, raw in enumerate(reader, start=2):
        cells = {(k or "").strip(): (v or "").strip() for k, v in raw.items()}
        port, lot = cells.get("port", ""), cells.get("lot", "")
        if not port:
            raise ParkctlError(f"{path}:{number}: empty port")
        if port in seen:
            raise ParkctlError(f"{path}:{number}: port {port} is already on line {seen[port]}")
        seen[port] = number
        try:
            check_lot(lot)
            name = check_name(cells.get("name") or default_name(port, lot))
        except ValueError as error:
            raise ParkctlError(f"{path}:{number}: {error}") from None
        rows.append(BoardRow(number, port, lot, name, cells.get("wifi_ssid") or None))
    if not rows:
        raise ParkctlError(f"{path}: no boards listed")
    return rows
