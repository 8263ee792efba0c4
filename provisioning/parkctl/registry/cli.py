"""`parkctl admin ...`, `parkctl device ...` and `parkctl lot ...`: the command line only.

Each verb names its handler through `_commands()` or `_lot_commands()`, which import the module
only when the verb runs, so `--help` and a failed parse cost no more than the standard library;
see `provisioning.parkctl.verbs`.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

from provisioning.common.scopes import DEVICE, OPERATOR
from provisioning.parkctl.verbs import Parser, Verbs, int_range


def _commands() -> ModuleType:
    from provisioning.parkctl.registry import commands

    return commands


def _lot_commands() -> ModuleType:
    from provisioning.parkctl.registry import lot_commands

    return lot_commands


def api_options(cmd: Parser) -> None:
    """--server, --ca-cert and --json: every verb that talks to the admin API."""
    cmd.add_argument("--server", help="Service URL [default: $PARK_SERVER].")
    cmd.add_argument(
        "--ca-cert", type=Path, help="CA bundle for an HTTPS server [default: $PARK_CA_CERT]."
    )
    cmd.add_argument("--json", dest="as_json", action="store_true", help="Print JSON for scripts.")


_CLIENT_ID_HELP = {
    DEVICE: "The device's client_id (dev_...).",
    OPERATOR: "The operator's client_id (op_...).",
}


def idp_option(cmd: Parser) -> None:
    """--idp: the external authorization server the board is (to be) a client of."""
    cmd.add_argument(
        "--idp",
        dest="idp_url",
        metavar="IDP",
        help="External authorization server: auth0://TENANT_DOMAIN (Management API; "
        "$PARK_IDP_CLIENT_ID/_SECRET) or an RFC 7591 issuer URL ($PARK_IDP_INITIAL_TOKEN).",
    )


def _client_id(cmd: Parser, kind: str = DEVICE) -> Parser:
    cmd.add_argument("client_id", help=_CLIENT_ID_HELP[kind])
    cmd.set_defaults(kind=kind)  # for the handlers devices and operators share
    return cmd


def _grace(cmd: Parser) -> Parser:
    cmd.add_argument(
        "--grace",
        type=int_range(0),
        help="Seconds the old secret keeps working; 0 revokes it and the tokens issued with it "
        "now [default: the server's, 24 h].",
    )
    return cmd


def admin_verbs(parkctl: Verbs) -> None:
    """`parkctl admin ...`."""
    admin = parkctl.group(
        "admin", "Operator clients: `create` on the database, the rest over the admin API."
    )

    cmd = admin.verb(
        "create",
        lambda: _commands().admin_create,
        "Create an operator client directly in the database and print its secret once.",
    )
    cmd.add_argument("--db", help="SQLAlchemy URL [default: $PARK_DB or SQLite in data dir].")
    cmd.add_argument(
        "--data-dir",
        type=Path,
        help="The service's data dir (holds the secret-hash key) [$PARK_DATA_DIR].",
    )
    cmd.add_argument("--name", default="admin", help="Who or what this operator is.")
    cmd.add_argument(
        "--role",
        default="admin",
        help="admin (the admin API) or viewer (counts:read only).",
    )
    cmd.add_argument("--json", dest="as_json", action="store_true", help="Print JSON for scripts.")
    cmd.add_argument(
        "--init",
        action="store_true",
        help="Create the database and data dir if they are new (else refused: a wrong "
        "--data-dir would make an operator the running service does not know).",
    )

    api_options(
        admin.verb(
            "list", lambda: _commands().admin_list, "Operators, oldest first (over the admin API)."
        )
    )
    _client_verbs(
        admin,
        OPERATOR,
        "Stop an operator: no new tokens, and those it holds stop working within seconds. "
        "The last enabled operator cannot be disabled.",
        "Let a disabled operator get tokens again.",
        "Give an operator a new secret (printed once).",
        "Delete an operator (not the last enabled one); its audit trail stays.",
    )

    cmd = admin.verb(
        "audit",
        lambda: _commands().admin_audit,
        "Recent admin actions and token issuance, newest first (over the admin API).",
    )
    cmd.add_argument("--target", help="Only events about this client.")
    cmd.add_argument("--limit", type=int_range(1, 500), default=50, help="How many events.")
    api_options(cmd)


def device_verbs(parkctl: Verbs) -> None:
    """`parkctl device ...`: all over the admin API."""
    device = parkctl.group("device", "Devices in the registry (over the admin API).")

    cmd = device.verb(
        "register",
        lambda: _commands().device_register,
        "Register a board; prints its client_id and client_secret (once).",
    )
    cmd.add_argument("--lot", required=True, help="Lot id (letters, digits, . _ -).")
    cmd.add_argument("--name", required=True, help="A name people recognise the board by.")
    cmd.add_argument("--mac", help="The board's MAC: binds the client to it.")
    idp_option(cmd)
    api_options(cmd)

    cmd = device.verb(
        "list", lambda: _commands().device_list, "All devices (of a lot), oldest first."
    )
    cmd.add_argument("--lot", help="Only this lot.")
    cmd.add_argument("--mac", help="Only the board with this MAC.")
    api_options(cmd)

    api_options(
        _client_id(
            device.verb(
                "show",
                lambda: _commands().device_show,
                "One device: state, latest reading and health.",
            )
        )
    )

    cmd = _client_id(
        device.verb(
            "update",
            lambda: _commands().device_update,
            "Rename a device or move it to another lot.",
        )
    )
    cmd.add_argument("--lot", help="Move it to this lot.")
    cmd.add_argument("--name", help="Rename it.")
    api_options(cmd)

    _client_verbs(
        device,
        DEVICE,
        "Stop a device getting tokens; tokens it holds stop working within seconds.",
        "Let a disabled device get tokens again.",
        "Give a device a new secret (printed once); the old one works for a grace period.",
        "Delete a device: its secrets stop working and its MAC is free; readings are kept.",
    )


def _client_verbs(
    group: Verbs, kind: str, disable: str, enable: str, rotate: str, delete: str
) -> None:
    """disable, enable, rotate-secret and delete (with these helps): the verbs devices and
    operators share, each taking the client_id and the admin-API options."""
    both = kind == DEVICE  # a device may be a client of an external server too
    for name, enabled, text in (("disable", False, disable), ("enable", True, enable)):
        cmd = _client_id(group.verb(name, lambda: _commands().set_enabled, text), kind)
        cmd.set_defaults(enabled=enabled, idp_url=None)
        if both:
            idp_option(cmd)
        api_options(cmd)
    cmd = _grace(
        _client_id(group.verb("rotate-secret", lambda: _commands().rotate_secret, rotate), kind)
    )
    cmd.set_defaults(idp_url=None)
    if both:
        idp_option(cmd)
    api_options(cmd)
    cmd = _client_id(group.verb("delete", lambda: _commands().delete, delete), kind)
    cmd.set_defaults(idp_url=None)
    if both:
        idp_option(cmd)
    api_options(cmd)


def _lot_name(cmd: Parser) -> Parser:
    cmd.add_argument("name", help="The lot id devices are registered with.")
    return cmd


def lot_verbs(parkctl: Verbs) -> None:
    """`parkctl lot ...`: lot records (capacity, label), all over the admin API."""
    lot = parkctl.group("lot", "Lot records: capacity and label (over the admin API).")

    cmd = _lot_name(
        lot.verb(
            "create", lambda: _lot_commands().lot_create, "Give a lot a record with its capacity."
        )
    )
    cmd.add_argument("--capacity", type=int_range(0), help="Spaces in the lot (shows free spaces).")
    cmd.add_argument("--label", help="What people read [default: the id].")
    api_options(cmd)

    cmd = _lot_name(
        lot.verb("set", lambda: _lot_commands().lot_set, "Change a lot's capacity and/or label.")
    )
    cmd.add_argument("--capacity", help="Spaces in the lot; 'none' clears it.")
    cmd.add_argument("--label", help="A new label.")
    api_options(cmd)

    api_options(lot.verb("list", lambda: _lot_commands().lot_list, "Every lot record."))
    api_options(_lot_name(lot.verb("show", lambda: _lot_commands().lot_show, "One lot record.")))
    text = "Drop a lot's record; its devices and readings stay and it works as before."
    api_options(_lot_name(lot.verb("delete", lambda: _lot_commands().lot_delete, text)))
    text = "Set the lot's count to CARS counted now: gate boards' flows count from here."
    cmd = _lot_name(lot.verb("recount", lambda: _lot_commands().lot_recount, text))
    cmd.add_argument("cars", type=int_range(0), help="Cars in the lot now (0 when it is empty).")
    api_options(cmd)
