"""How the registry and lot verbs print: tables and a device's card for people, JSON for scripts.

Rich is imported by the functions that print for people: `--json` runs of scripts skip it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel

from provisioning.common import display
from provisioning.common.admin_schemas import Device

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

M = TypeVar("M", bound=BaseModel)


def console() -> Console:
    from rich.console import Console

    return Console(highlight=False)


def note(text: str) -> None:
    from rich.console import Console

    Console(stderr=True, highlight=False).print(text)


def print_json(data: Any) -> None:
    # Plain print: Rich would wrap long lines and interpret [brackets] in values.
    print(json.dumps(data, indent=2))


def ago(ts: float | None) -> str:
    """`42s ago`, `3h ago`: what a person scanning a table wants to know."""
    if ts is None:
        return "-"
    age = max(0.0, time.time() - ts)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if age >= size:
            return f"{int(age // size)}{unit} ago"
    return f"{int(age)}s ago"


def when(ts: float | None) -> str:
    """Local time with the age: `2026-11-26T01:09:18+00:00 (4s ago)`."""
    if ts is None:
        return "-"
    local = datetime.fromtimestamp(ts).astimezone().isoformat(timespec="seconds")
    return local if ts > time.time() else f"{local} ({ago(ts)})"


# IDs and MACs are copied from tables into commands: keep them on one line, whole.
_WHOLE = {"client_id": 20, "mac": 17}


def list_table(*columns: str) -> Table:
    from rich import box
    from rich.table import Table

    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for column in columns:
        table.add_column(column, overflow="fold", min_width=_WHOLE.get(column))
    return table


def print_rows(
    items: Sequence[M],
    as_json: bool,
    columns: tuple[str, ...],
    row: Callable[[M], tuple[str, ...]],
    count: str | None = None,
) -> None:
    """A list for scripts (`--json`: the items as JSON) or for people: a table of `columns`,
    one `row(item)` each, then `N <count>(s)` when `count` names the items."""
    if as_json:
        print_json([item.model_dump(mode="json") for item in items])
        return
    table = list_table(*columns)
    for item in items:
        table.add_row(*row(item))
    out = console()
    out.print(table)
    if count:
        out.print(f"{len(items)} {count}(s)")


def _counter_rows(device: Device) -> list[tuple[str, str]]:
    """A gate board's counters, and whether they went backwards (a new series)."""
    c = device.counters
    if c is None:
        return []
    rows = [("counters", f"in {c.gate_in}, out {c.gate_out} (seq {c.seq})")]
    if c.series > 1:
        rows.append(
            (
                "series",
                f"[yellow]{c.series}: the counters went backwards at {when(c.series_since)} "
                "(flash wiped or board swapped); counting goes on from there[/yellow]",
            )
        )
    if c.faults:
        rows.append(
            (
                "faults",
                f"[yellow]{c.faults}, the last at {when(c.fault_at)}: a step beyond what the "
                "lanes can pass was not counted[/yellow]",
            )
        )
    return rows


def agent_text(agent: dict[str, Any] | None) -> str:
    """`1.4.0 (target 1.5.0: refused, bad signature on the manifest)`, or -."""
    if not agent or not agent.get("version"):
        return "-"
    text = str(agent["version"])
    target, state = agent.get("target"), agent.get("state")
    if state and (target != agent["version"] or state != "confirmed"):
        why = f", {agent['reason']}" if agent.get("reason") else ""
        text += f" (target {target or '-'}: {state}{why})"
    return text


def device_table(device: Device) -> Table:
    from rich.table import Table

    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    reading = device.reading
    rows: list[tuple[str, Text | str]] = [
        ("client_id", device.client_id),
        ("lot", device.lot),
        ("name", device.name),
        ("mac", device.mac or "-"),
        ("issuer", device.issuer or "parkfleet"),
        ("enabled", "yes" if device.enabled else "[red]no[/red]"),
        ("created", when(device.created_at)),
        ("last seen", when(device.last_seen_at)),
        ("reading", f"{reading.cars} cars (seq {reading.seq})" if reading else "-"),
        ("reading at", when(reading.ts or reading.received_at) if reading else "-"),
        *_counter_rows(device),
        *(display.health_rows(device.health) if device.health else [("health", "-")]),
        ("health at", when(device.health_at)),
        ("agent", agent_text(device.agent)),
        ("vitals", _vitals_text(device.vitals)),
        ("last crash", _crash_text(device.last_crash)),
    ]
    for key, value in rows:
        table.add_row(key, value)
    return table


def _vitals_text(vitals: dict[str, Any] | None) -> Text | str:
    if not vitals:
        return "-"
    from rich.text import Text

    # Text, not markup: a board controls what it reports.
    fields = " ".join(f"{k}={v}" for k, v in vitals.items() if k not in ("at", "version"))
    return Text(f"{fields} (on {vitals['version'] or '?'}, {when(vitals['at'])})")


def _crash_text(crash: dict[str, Any] | None) -> Text | str:
    if not crash:
        return "-"
    from rich.text import Text

    head = f"{crash['cause']} x{crash['count']} on {crash['version'] or '?'}, {when(crash['at'])}"
    return Text(head + ("\n" + crash["traceback"] if crash["traceback"] else ""))
