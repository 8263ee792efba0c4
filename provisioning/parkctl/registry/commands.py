"""`parkctl admin ...` (local, on the database) and `parkctl device ...` (over the admin API):
what the verbs do; their options are parsed in `registry.cli`.

`admin create` is the first-superuser step: it writes an operator client straight into the
database, because nobody can call the admin API before an operator exists. Everything else goes
through the admin API as that operator (`PARK_SERVER`, `PARK_CLIENT_ID`, `PARK_CLIENT_SECRET`),
so the CLI gets exactly the checks and audit trail any other caller gets.

Secrets go to stdout only from `admin create`, `device register` and `device rotate-secret`,
once; notes for people go to stderr so `--json` output stays parseable.

Loaded only when one of these verbs runs; it loads the admin API client (httpx, pydantic) and
Rich, never the server stack: `admin create` imports that inside, as it is the one verb here that
opens the database.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from provisioning.common.admin_schemas import AuditEntry, Device, Operator, SecretRotated
from provisioning.common.errors import ParkctlError
from provisioning.common.scopes import OPERATOR
from provisioning.parkctl.api.client import AdminClient, from_environment
from provisioning.parkctl.registry.render import (
    agent_text,
    ago,
    console,
    device_table,
    note,
    print_json,
    print_rows,
    when,
)

if TYPE_CHECKING:
    from provisioning.parkctl.idp.base import IdentityProvider

_SHOWN_ONCE = (
    "[yellow]The client secret is shown only this once and cannot be recovered: "
    "store it now.[/yellow]"
)


def admin_create(
    db: str | None, data_dir: Path | None, name: str, role: str, as_json: bool, init: bool
) -> None:
    """Create an operator client directly in the database and print its secret once. A new
    store (no data directory or database of a service yet) only with `init`: a mistyped
    `--data-dir` would otherwise make an operator that the running service never knew."""
    # The server stack, for this verb only (the others here talk to the admin API).
    from provisioning.parkctl.hostdb import describe, missing_store, open_store
    from provisioning.service.auth.secrets import SecretHasher
    from provisioning.service.config import from_flags
    from provisioning.service.registry import service

    # The hash key must be the one the service uses, so this shares its data directory.
    settings = from_flags({"db": db, "data_dir": data_dir})
    why = missing_store(settings)
    if why is not None and not init:
        raise ParkctlError(
            f"no parkfleet service's store at {describe(settings)}: {why}. Give the running "
            "service's --data-dir (and --db), as `parkctl serve` printed them at start; to "
            "start a new store, add --init"
        )
    with open_store(settings) as sessions, sessions() as session:
        try:
            client, secret = service.create_operator(
                session, SecretHasher.from_data_dir(settings.data_dir), _local_actor(), name, role
            )
        except service.RegistryError as error:
            raise ParkctlError(error.description) from None
    # On stderr, so that --json output stays one JSON document.
    print(f"{'new' if why else 'using'} database {describe(settings)}", file=sys.stderr)
    if as_json:
        print_json({"client_id": client.client_id, "client_secret": secret})
        return
    console().print(
        f"Operator [bold]{client.client_id}[/bold] ({role}) created. "
        "For parkctl and the fleet tool:\n"
        f"  export PARK_CLIENT_ID={client.client_id}\n"
        f"  export PARK_CLIENT_SECRET={secret}",
        soft_wrap=True,  # never break the secret across lines
    )
    note(_SHOWN_ONCE)


def _local_actor() -> str:
    """Audit actor for changes made on the database directly: the OS user who ran parkctl."""
    try:
        return f"local:{getpass.getuser()}"[:64]
    except (KeyError, OSError):  # no passwd entry, e.g. in a container
        return "local"


def admin_audit(
    target: str | None, limit: int, server: str | None, ca_cert: Path | None, as_json: bool
) -> None:
    """Recent admin actions and token issuance, newest first (over the admin API)."""
    with admin_client(server, ca_cert) as api:
        page = api.audit(limit=limit, target=target)
        # Operators are few (one page): their names beside their IDs, as the dashboard shows.
        names = {o.client_id: o.name for o in api.list_operators().items} if not as_json else {}
    print_rows(
        page.items, as_json, ("when", "actor", "action", "target", "detail"),
        lambda event: _event_row(event, names),
    )  # fmt: skip


def _event_row(event: AuditEntry, names: dict[str, str]) -> tuple[str, ...]:
    detail = " ".join(f"{k}={json.dumps(v)}" for k, v in (event.detail or {}).items())
    actor = f"{names[event.actor]} ({event.actor})" if event.actor in names else event.actor
    return ago(event.at), actor, event.action, event.target or "", detail


def admin_client(server: str | None, ca_cert: Path | None) -> AdminClient:
    return from_environment(server, ca_cert)


def device_register(
    lot: str,
    name: str,
    mac: str | None,
    idp_url: str | None,
    server: str | None,
    ca_cert: Path | None,
    as_json: bool,
) -> None:
    """Register a board (at `idp_url` too, when given); prints its client_id and client_secret
    (once)."""
    from provisioning.common.rules import check_lot, check_name

    with admin_client(server, ca_cert) as api:
        if idp_url is None:
            created = api.register_device(lot, name, mac)
            device: Device = created
            secret = created.client_secret
        else:
            from provisioning.parkctl.idp.twosided import TwoSided

            try:
                lot, name = check_lot(lot), check_name(name)  # before anything is made outside
            except ValueError as error:
                raise ParkctlError(str(error)) from None
            with _idp(idp_url) as idp:
                made = TwoSided(api, idp).register(lot, name, mac)
            device, secret = api.get_device(made.client_id), made.secret
    if as_json:
        print_json({**device.model_dump(mode="json"), "client_secret": secret.get_secret_value()})
        return
    out = console()
    out.print(device_table(device))
    out.print(f"[bold]client_secret[/bold] {secret.get_secret_value()}", soft_wrap=True)
    note(_SHOWN_ONCE)


@contextlib.contextmanager
def _idp(url: str) -> Iterator[IdentityProvider]:
    """The external server `--idp URL` names, closed afterwards."""
    from provisioning.parkctl.idp import open_idp

    idp = open_idp(url)
    try:
        yield idp
    finally:
        idp.close()


def device_list(
    lot: str | None, mac: str | None, server: str | None, ca_cert: Path | None, as_json: bool
) -> None:
    """All devices (of a lot), oldest first."""
    with admin_client(server, ca_cert) as api:
        if mac is not None:
            devices = api.list_devices(lot=lot, mac=mac).items
        else:
            devices = list(api.iter_devices(lot=lot))
    columns = ("client_id", "lot", "name", "mac", "issuer", "enabled", "cars", "seen", "agent")
    print_rows(devices, as_json, columns, _device_row, "device")


def _device_row(d: Device) -> tuple[str, ...]:
    return (
        d.client_id,
        d.lot,
        d.name,
        d.mac or "-",
        d.issuer or "parkfleet",
        "yes" if d.enabled else "[red]no[/red]",
        str(d.reading.cars) if d.reading else "-",
        ago(d.last_seen_at),
        agent_text(d.agent),
    )


def device_show(client_id: str, server: str | None, ca_cert: Path | None, as_json: bool) -> None:
    """One device: state, latest reading and health."""
    with admin_client(server, ca_cert) as api:
        device = api.get_device(client_id)
    if as_json:
        print_json(device.model_dump(mode="json"))
    else:
        console().print(device_table(device))


def device_update(
    client_id: str,
    lot: str | None,
    name: str | None,
    server: str | None,
    ca_cert: Path | None,
    as_json: bool,
) -> None:
    """Rename a device or move it to another lot."""
    if lot is None and name is None:
        raise ParkctlError("nothing to change: give --lot and/or --name")
    with admin_client(server, ca_cert) as api:
        device = api.update_device(client_id, lot=lot, name=name)
    _report(device, "updated", as_json)


def _report(device: Device, what: str, as_json: bool) -> None:
    if as_json:
        print_json(device.model_dump(mode="json"))
    else:
        console().print(
            f"Device [bold]{device.client_id}[/bold] ({device.lot}/{device.name}) {what}."
        )


def set_enabled(
    kind: str,
    client_id: str,
    enabled: bool,
    idp_url: str | None,
    server: str | None,
    ca_cert: Path | None,
    as_json: bool,
) -> None:
    """Disable or enable a device (at `idp_url` too, when given) or an operator (`kind`); the
    last enabled operator cannot be disabled."""
    what = "enabled" if enabled else "disabled"
    with admin_client(server, ca_cert) as api:
        if kind == OPERATOR:
            _operator_done(api.set_operator_enabled(client_id, enabled), what, as_json)
        elif idp_url is not None:
            from provisioning.parkctl.idp import twosided

            with _idp(idp_url) as idp:
                _report(twosided.set_enabled(api, idp, client_id, enabled), what, as_json)
        else:
            _report(api.enable(client_id) if enabled else api.disable(client_id), what, as_json)


def rotate_secret(
    kind: str,
    client_id: str,
    grace: int | None,
    idp_url: str | None,
    server: str | None,
    ca_cert: Path | None,
    as_json: bool,
) -> None:
    """Give a device or an operator (`kind`) a new secret (printed once); the old one works for
    a grace period. A device of `idp_url` gets it there (that server decides the grace)."""
    with admin_client(server, ca_cert) as api:
        if idp_url is not None and kind != OPERATOR:
            from provisioning.parkctl.idp import twosided

            with _idp(idp_url) as idp:
                secret = twosided.rotate_secret(api, idp, client_id)
            rotated = SecretRotated(
                client_id=client_id, client_secret=secret, previous_secret_expires_at=None
            )
            if not idp_url.startswith("auth0://"):
                # RFC 7592 §2.2: the server may keep the secret on an update (node-oidc-provider
                # does), so what is shown is the client's current secret, maybe the old one.
                note("[yellow]An RFC 7592 server may keep the same secret: this is the "
                      "client's current secret.[/yellow]")  # fmt: skip
        else:
            rotate = api.rotate_operator_secret if kind == OPERATOR else api.rotate_secret
            rotated = rotate(client_id, grace)
    _show_rotated(rotated, as_json)


def _show_rotated(rotated: SecretRotated, as_json: bool) -> None:
    if as_json:
        print_json(rotated.model_dump(mode="json"))
        return
    out = console()
    out.print(f"[bold]client_id[/bold]     {rotated.client_id}")
    out.print(
        f"[bold]client_secret[/bold] {rotated.client_secret.get_secret_value()}", soft_wrap=True
    )
    until = rotated.previous_secret_expires_at
    out.print(
        f"The old secret works until {when(until)}." if until else "The old secret no longer works."
    )
    note(_SHOWN_ONCE)


def delete(
    kind: str,
    client_id: str,
    idp_url: str | None,
    server: str | None,
    ca_cert: Path | None,
    as_json: bool,
) -> None:
    """Delete a device (its secrets stop working, its MAC is free, readings are kept; its
    client at `idp_url` too, when given) or an operator (not the last enabled one; its audit
    trail stays)."""
    with admin_client(server, ca_cert) as api:
        if kind == OPERATOR:
            api.delete_operator(client_id)
        elif idp_url is not None:
            from provisioning.parkctl.idp import twosided

            with _idp(idp_url) as idp:
                twosided.delete(api, idp, client_id)
        else:
            api.delete_device(client_id)
    what = "Operator" if kind == OPERATOR else "Device"
    deleted("client_id", client_id, f"{what} [bold]{client_id}[/bold] deleted.", as_json)


def deleted(key: str, value: str, text: str, as_json: bool) -> None:
    """What a delete prints: `{key: value, "deleted": true}` for scripts, `text` for people."""
    if as_json:
        print_json({key: value, "deleted": True})
    else:
        console().print(text)


# --- operators (over the admin API) ---


def _operator_done(operator: Operator, what: str, as_json: bool) -> None:
    if as_json:
        print_json(operator.model_dump(mode="json"))
    else:
        console().print(f"Operator [bold]{operator.client_id}[/bold] ({operator.name}) {what}.")


def admin_list(server: str | None, ca_cert: Path | None, as_json: bool) -> None:
    """Operators, oldest first (over the admin API)."""
    with admin_client(server, ca_cert) as api:
        operators = api.list_operators().items
    print_rows(operators, as_json, ("client_id", "name", "enabled", "created"), _operator_row)


def _operator_row(op: Operator) -> tuple[str, ...]:
    enabled = "yes" if op.enabled else "[red]no[/red]"
    return op.client_id, op.name, enabled, ago(op.created_at)
