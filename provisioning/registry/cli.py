"""`parkctl admin ...` (local, on the database) and `parkctl device ...` (over the admin API).

`admin create` is the first-superuser step: it writes an operator client straight into the
database, because nobody can call the admin API before an operator exists. Everything else goes
through the admin API as that operator (`PARK_SERVER`, `PARK_CLIENT_ID`, `PARK_CLIENT_SECRET`),
so the CLI gets exactly the checks and audit trail any other caller gets.

Secrets go to stdout only from `admin create`, `device register` and `device rotate-secret`,
once; notes for people go to stderr so `--json` output stays parseable.
"""

from __future__ import annotations

import getpass
import json
import time
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from provisioning.errors import ParkctlError
from provisioning.registry.client import AdminClient, from_environment
from provisioning.registry.schemas import Device, Operator, SecretRotated

admin_app = typer.Typer(
    help="Operator clients: `create` on the database, the rest over the admin API.",
    no_args_is_help=True,
)
device_app = typer.Typer(help="Devices in the registry (over the admin API).", no_args_is_help=True)

Server = Annotated[
    str | None, typer.Option("--server", help="Service URL [default: $PARK_SERVER].")
]
CaCert = Annotated[
    Path | None,
    typer.Option("--ca-cert", help="CA bundle for an HTTPS server [default: $PARK_CA_CERT]."),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
ClientId = Annotated[str, typer.Argument(help="The device's client_id (dev_...).")]
Grace = Annotated[
    int | None,
    typer.Option(
        min=0,
        help="Seconds the old secret keeps working; 0 revokes it and the tokens issued with it "
        "now [default: the server's, 24 h].",
    ),
]

_SHOWN_ONCE = (
    "[yellow]The client secret is shown only this once and cannot be recovered: "
    "store it now.[/yellow]"
)


def _out() -> Console:
    return Console(highlight=False)


def _note(text: str) -> None:
    Console(stderr=True, highlight=False).print(text)


def _print_json(data: Any) -> None:
    # Plain print: Rich would wrap long lines and interpret [brackets] in values.
    typer.echo(json.dumps(data, indent=2))


def _ago(ts: float | None) -> str:
    """`42s ago`, `3h ago`: what a person scanning a table wants to know."""
    if ts is None:
        return "-"
    age = max(0.0, time.time() - ts)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if age >= size:
            return f"{int(age // size)}{unit} ago"
    return f"{int(age)}s ago"


def _when(ts: float | None) -> str:
    """Local time with the age: `2026-11-26T01:09:18+00:00 (4s ago)`."""
    if ts is None:
        return "-"
    local = datetime.fromtimestamp(ts).astimezone().isoformat(timespec="seconds")
    return local if ts > time.time() else f"{local} ({_ago(ts)})"


# IDs and MACs are copied from tables into commands: keep them on one line, whole.
_WHOLE = {"client_id": 20, "mac": 17}


def _table(*columns: str) -> Table:
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for column in columns:
        table.add_column(column, overflow="fold", min_width=_WHOLE.get(column))
    return table


def _device_table(device: Device) -> Table:
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    reading = device.reading
    rows = [
        ("client_id", device.client_id),
        ("lot", device.lot),
        ("name", device.name),
        ("mac", device.mac or "-"),
        ("enabled", "yes" if device.enabled else "[red]no[/red]"),
        ("created", _when(device.created_at)),
        ("last seen", _when(device.last_seen_at)),
        ("reading", f"{reading.cars} cars (seq {reading.seq})" if reading else "-"),
        ("reading at", _when(reading.ts or reading.received_at) if reading else "-"),
        ("health", json.dumps(device.health) if device.health else "-"),
        ("health at", _when(device.health_at)),
    ]
    for key, value in rows:
        table.add_row(key, value)
    return table


@admin_app.command("create")
def admin_create(
    db: Annotated[
        str | None, typer.Option(help="SQLAlchemy URL [default: $PARK_DB or SQLite in data dir].")
    ] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option(help="The service's data dir (holds the secret-hash key) [$PARK_DATA_DIR]."),
    ] = None,
    name: Annotated[str, typer.Option(help="Who or what this operator is.")] = "admin",
    as_json: AsJson = False,
) -> None:
    """Create an operator client directly in the database and print its secret once."""
    from provisioning.auth.secrets import SecretHasher
    from provisioning.config import Settings
    from provisioning.registry import service
    from provisioning.store.db import make_engine, migrate, session_factory

    given: dict[str, Any] = {"db": db, "data_dir": data_dir}
    settings = Settings(**{k: v for k, v in given.items() if v is not None})
    # The hash key must be the one the service uses, so this shares its data directory.
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        migrate(settings.db_url)
    except Exception as error:  # noqa: BLE001 - any driver error: report it, not a traceback
        raise ParkctlError(f"cannot open the database: {type(error).__name__}: {error}") from None
    engine = make_engine(settings.db_url)
    try:
        with session_factory(engine)() as session:
            client, secret = service.create_operator(
                session, SecretHasher.from_data_dir(settings.data_dir), _local_actor(), name
            )
    except service.RegistryError as error:
        raise ParkctlError(error.description) from None
    finally:
        engine.dispose()
    if as_json:
        _print_json({"client_id": client.client_id, "client_secret": secret})
        return
    _out().print(
        f"Operator [bold]{client.client_id}[/bold] created. For parkctl and the fleet tool:\n"
        f"  export PARK_CLIENT_ID={client.client_id}\n"
        f"  export PARK_CLIENT_SECRET={secret}",
        soft_wrap=True,  # never break the secret across lines
    )
    _note(_SHOWN_ONCE)


def _local_actor() -> str:
    """Audit actor for changes made on the database directly: the OS user who ran parkctl."""
    try:
        return f"local:{getpass.getuser()}"[:64]
    except (KeyError, OSError):  # no passwd entry, e.g. in a container
        return "local"


@admin_app.command("audit")
def admin_audit(
    target: Annotated[str | None, typer.Option(help="Only events about this client.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500, help="How many events.")] = 50,
    server: Server = None,
    ca_cert: CaCert = None,
    as_json: AsJson = False,
) -> None:
    """Recent admin actions and token issuance, newest first (over the admin API)."""
    with _client(server, ca_cert) as api:
        page = api.audit(limit=limit, target=target)
    if as_json:
        _print_json([event.model_dump(mode="json") for event in page.items])
        return
    table = _table("when", "actor", "action", "target", "detail")
    for event in page.items:
        detail = " ".join(f"{k}={json.dumps(v)}" for k, v in (event.detail or {}).items())
        table.add_row(_ago(event.at), event.actor, event.action, event.target or "", detail)
    _out().print(table)


OperatorId = Annotated[str, typer.Argument(help="The operator's client_id (op_...).")]


def _operator_done(operator: Operator, what: str, as_json: bool) -> None:
    if as_json:
        _print_json(operator.model_dump(mode="json"))
    else:
        _out().print(f"Operator [bold]{operator.client_id}[/bold] ({operator.name}) {what}.")


@admin_app.command("list")
def admin_list(server: Server = None, ca_cert: CaCert = None, as_json: AsJson = False) -> None:
    """Operators, oldest first (over the admin API)."""
    with _client(server, ca_cert) as api:
        operators = api.list_operators().items
    if as_json:
        _print_json([operator.model_dump(mode="json") for operator in operators])
        return
    table = _table("client_id", "name", "enabled", "created")
    for op in operators:
        enabled = "yes" if op.enabled else "[red]no[/red]"
        table.add_row(op.client_id, op.name, enabled, _ago(op.created_at))
    _out().print(table)


@admin_app.command("disable")
def admin_disable(
    client_id: OperatorId, server: Server = None, ca_cert: CaCert = None, as_json: AsJson = False
) -> None:
    """Stop an operator: no new tokens, and those it holds stop working within seconds.
    The last enabled operator cannot be disabled."""
    with _client(server, ca_cert) as api:
        _operator_done(api.set_operator_enabled(client_id, False), "disabled", as_json)


@admin_app.command("enable")
def admin_enable(
    client_id: OperatorId, server: Server = None, ca_cert: CaCert = None, as_json: AsJson = False
) -> None:
    """Let a disabled operator get tokens again."""
    with _client(server, ca_cert) as api:
        _operator_done(api.set_operator_enabled(client_id, True), "enabled", as_json)


@admin_app.command("rotate-secret")
def admin_rotate_secret(
    client_id: OperatorId,
    grace: Grace = None,
    server: Server = None,
    ca_cert: CaCert = None,
    as_json: AsJson = False,
) -> None:
    """Give an operator a new secret (printed once)."""
    with _client(server, ca_cert) as api:
        rotated = api.rotate_operator_secret(client_id, grace)
    _show_rotated(rotated, as_json)


@admin_app.command("delete")
def admin_delete(
    client_id: OperatorId, server: Server = None, ca_cert: CaCert = None, as_json: AsJson = False
) -> None:
    """Delete an operator (not the last enabled one); its audit trail stays."""
    with _client(server, ca_cert) as api:
        api.delete_operator(client_id)
    if as_json:
        _print_json({"client_id": client_id, "deleted": True})
    else:
        _out().print(f"Operator [bold]{client_id}[/bold] deleted.")


def _client(server: str | None, ca_cert: Path | None) -> AdminClient:
    return from_environment(server, ca_cert)


@device_app.command("register")
def device_register(
    lot: Annotated[str, typer.Option(help="Lot id (letters, digits, . _ -).")],
    name: Annotated[str, typer.Option(help="A name people recognise the board by.")],
    mac: Annotated[
        str | None, typer.Option(help="The board's MAC: binds the client to it.")
    ] = None,
    server: Server = None,
    ca_cert: CaCert = None,
    as_json: AsJson = False,
) -> None:
    """Register a board; prints its client_id and client_secret (once)."""
    with _client(server, ca_cert) as api:
        created = api.register_device(lot, name, mac)
    if as_json:
        _print_json(created.model_dump(mode="json"))
        return
    out = _out()
    out.print(_device_table(created))
    out.print(
        f"[bold]client_secret[/bold] {created.client_secret.get_secret_value()}", soft_wrap=True
    )
    _note(_SHOWN_ONCE)


@device_app.command("list")
def device_list(
    lot: Annotated[str | None, typer.Option(help="Only this lot.")] = None,
    mac: Annotated[str | None, typer.Option(help="Only the board with this MAC.")] = None,
    server: Server = None,
    ca_cert: CaCert = None,
    as_json: AsJson = False,
) -> None:
    """All devices (of a lot), oldest first."""
    with _client(server, ca_cert) as api:
        if mac is not None:
            devices = api.list_devices(lot=lot, mac=mac).items
        else:
            devices = list(api.iter_devices(lot=lot))
    if as_json:
        _print_json([device.model_dump(mode="json") for device in devices])
        return
    table = _table("client_id", "lot", "name", "mac", "enabled", "cars", "seen")
    for d in devices:
        table.add_row(
            d.client_id,
            d.lot,
            d.name,
            d.mac or "-",
            "yes" if d.enabled else "[red]no[/red]",
            str(d.reading.cars) if d.reading else "-",
            _ago(d.last_seen_at),
        )
    out = _out()
    out.print(table)
    out.print(f"{len(devices)} device(s)")


@device_app.command("show")
def device_show(
    client_id: ClientId, server: Server = None, ca_cert: CaCert = None, as_json: AsJson = False
) -> None:
    """One device: state, latest reading and health."""
    with _client(server, ca_cert) as api:
        device = api.get_device(client_id)
    if as_json:
        _print_json(device.model_dump(mode="json"))
    else:
        _out().print(_device_table(device))


@device_app.command("update")
def device_update(
    client_id: ClientId,
    lot: Annotated[str | None, typer.Option(help="Move it to this lot.")] = None,
    name: Annotated[str | None, typer.Option(help="Rename it.")] = None,
    server: Server = None,
    ca_cert: CaCert = None,
    as_json: AsJson = False,
) -> None:
    """Rename a device or move it to another lot."""
    if lot is None and name is None:
        raise ParkctlError("nothing to change: give --lot and/or --name")
    with _client(server, ca_cert) as api:
        device = api.update_device(client_id, lot=lot, name=name)
    _report(device, "updated", as_json)


def _report(device: Device, what: str, as_json: bool) -> None:
    if as_json:
        _print_json(device.model_dump(mode="json"))
    else:
        _out().print(f"Device [bold]{device.client_id}[/bold] ({device.lot}/{device.name}) {what}.")


def _set_enabled(
    client_id: str, enabled: bool, server: str | None, ca_cert: Path | None, as_json: bool
) -> None:
    with _client(server, ca_cert) as api:
        device = api.enable(client_id) if enabled else api.disable(client_id)
    _report(device, "enabled" if enabled else "disabled", as_json)


@device_app.command("disable")
def device_disable(
    client_id: ClientId, server: Server = None, ca_cert: CaCert = None, as_json: AsJson = False
) -> None:
    """Stop a device getting tokens; tokens it holds stop working within seconds."""
    _set_enabled(client_id, False, server, ca_cert, as_json)


@device_app.command("enable")
def device_enable(
    client_id: ClientId, server: Server = None, ca_cert: CaCert = None, as_json: AsJson = False
) -> None:
    """Let a disabled device get tokens again."""
    _set_enabled(client_id, True, server, ca_cert, as_json)


@device_app.command("rotate-secret")
def device_rotate_secret(
    client_id: ClientId,
    grace: Grace = None,
    server: Server = None,
    ca_cert: CaCert = None,
    as_json: AsJson = False,
) -> None:
    """Give a device a new secret (printed once); the old one works for a grace period."""
    with _client(server, ca_cert) as api:
        rotated = api.rotate_secret(client_id, grace)
    _show_rotated(rotated, as_json)


def _show_rotated(rotated: SecretRotated, as_json: bool) -> None:
    if as_json:
        _print_json(rotated.model_dump(mode="json"))
        return
    out = _out()
    out.print(f"[bold]client_id[/bold]     {rotated.client_id}")
    out.print(
        f"[bold]client_secret[/bold] {rotated.client_secret.get_secret_value()}", soft_wrap=True
    )
    until = rotated.previous_secret_expires_at
    out.print(
        f"The old secret works until {_when(until)}."
        if until
        else "The old secret no longer works."
    )
    _note(_SHOWN_ONCE)


@device_app.command("delete")
def device_delete(
    client_id: ClientId, server: Server = None, ca_cert: CaCert = None, as_json: AsJson = False
) -> None:
    """Delete a device: its secrets stop working and its MAC is free; readings are kept."""
    with _client(server, ca_cert) as api:
        api.delete_device(client_id)
    if as_json:
        _print_json({"client_id": client_id, "deleted": True})
    else:
        _out().print(f"Device [bold]{client_id}[/bold] deleted.")
