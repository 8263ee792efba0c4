"""`parkctl board info|flash|install`, `parkctl provision` and `parkctl fleet provision`: the
command line only. Each verb names its handler through `_board_commands()` or `_commands()`,
which import the module only when the verb runs: board verbs `fleet.board_commands` (esptool,
the mpremote driver, Rich), the provisioning runs `fleet.commands` (those and the admin API
client); see `provisioning.parkctl.verbs`."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

from provisioning.parkctl.fleet.config import DEFAULT_INTERVAL_S, DEFAULT_SENSOR, ProvisionOptions
from provisioning.parkctl.registry.cli import idp_option
from provisioning.parkctl.verbs import Parser, Verbs, int_range, options_object


def _board_commands() -> ModuleType:
    from provisioning.parkctl.fleet import board_commands

    return board_commands


def _commands() -> ModuleType:
    from provisioning.parkctl.fleet import commands

    return commands


def _port(cmd: Parser) -> None:
    cmd.add_argument("--port", "-p", required=True, help="Serial port, pty or socket:// URL.")


def _firmware(cmd: Parser) -> None:
    cmd.add_argument(
        "--firmware", type=Path, required=True, help="MicroPython .bin for the board's chip."
    )


def _ca_cert(cmd: Parser) -> None:
    cmd.add_argument("--ca-cert", type=Path, help="PEM CA of the service's TLS certificate.")


def _flash_options(cmd: Parser) -> None:
    cmd.add_argument("--baud", type=int, help="Flashing baud rate (after the stub starts).")
    cmd.add_argument("--erase", action="store_true", help="Erase the whole flash first.")


def _provision_options(cmd: Parser) -> None:
    """What `provision` and `fleet provision` share: the network, flashing and verifying,
    handed to their handlers as one `ProvisionOptions` (parameter `options`)."""
    cmd.add_argument("--wifi-ssid", default="", help="WiFi network the boards join.")
    cmd.add_argument(
        "--wifi-password-file", type=Path, help="File whose first line is the WiFi password."
    )
    cmd.add_argument("--server", help="Service URL (default: $PARK_SERVER).")
    cmd.add_argument("--token-url", help="Default: SERVER/oauth/token.")
    cmd.add_argument(
        "--ingest-url",
        help="Ingestion API base (boards POST to it + /v1/counts). Default: SERVER.",
    )
    _ca_cert(cmd)
    _flash_options(cmd)
    cmd.add_argument(
        "--interval", type=int, default=DEFAULT_INTERVAL_S, help="Seconds between readings."
    )
    cmd.add_argument(
        "--sensor",
        default=DEFAULT_SENSOR,
        help="Sensor config as JSON (device/README). Default: the gate sensor real boards "
        f'have, {DEFAULT_SENSOR}; \'{{"kind": "file", "path": "cars.txt"}}\' '
        "only where a test or the demo writes that file.",
    )
    cmd.add_argument(
        "--verify-timeout", type=float, default=90.0, help="Seconds to wait for the first upload."
    )
    _release(cmd)
    idp_option(cmd)
    options_object(cmd, "options", ProvisionOptions)


def _state(cmd: Parser, default: str) -> None:
    cmd.add_argument(
        "--state",
        type=Path,
        help=f"Finished steps per port and MAC, to resume (default: {default}).",
    )


def _release(cmd: Parser) -> None:
    cmd.add_argument(
        "--release",
        type=Path,
        help="A built release (parkctl release build) to install; default: build one now, "
        "unsigned, version 0.0.0, which takes no updates.",
    )


def board_verbs(parkctl: Verbs) -> None:
    """`parkctl board ...`: one board on a serial port."""
    board = parkctl.group("board", "One board on a serial port.")

    text = "Chip, MAC and flash size (esptool), MicroPython and the agent (mpremote)."
    cmd = board.verb("info", lambda: _board_commands().board_info, text)
    _port(cmd)
    cmd.add_argument("--json", dest="as_json", action="store_true", help="Machine-readable output.")

    text = "Write MicroPython with esptool at the chip's offset and verify it (flash MD5)."
    cmd = board.verb("flash", lambda: _board_commands().board_flash, text)
    _port(cmd)
    _firmware(cmd)
    _flash_options(cmd)

    text = "Copy a release (the agent as .mpy) and config.json with mpremote, then reset."
    cmd = board.verb("install", lambda: _board_commands().board_install, text)
    _port(cmd)
    cmd.add_argument("--config", type=Path, required=True, help="The board's config.json.")
    _ca_cert(cmd)
    _release(cmd)


def provision_verb(parkctl: Verbs) -> None:
    """`parkctl provision`: one board, from blank to counting."""
    text = "Register, flash, install and verify one board (its identity bound to its MAC)."
    cmd = parkctl.verb("provision", lambda: _commands().provision_command, text)
    _port(cmd)
    cmd.add_argument("--lot", required=True, help="Parking lot the board counts for.")
    _firmware(cmd)
    cmd.add_argument("--name", help="Board name (default: LOT-PORT).")
    _state(cmd, "provision.state.json in parkctl's cache directory")
    _provision_options(cmd)


def fleet_verbs(parkctl: Verbs) -> None:
    """`parkctl fleet ...`: many boards from a manifest."""
    fleet = parkctl.group("fleet", "Many boards from a manifest.")

    text = "Provision every board of MANIFEST in parallel; resumable; summary at the end."
    cmd = fleet.verb("provision", lambda: _commands().fleet_provision, text)
    cmd.add_argument("manifest", type=Path, help="CSV: port,lot,name[,wifi_ssid].")
    _firmware(cmd)
    cmd.add_argument("--jobs", "-j", type=int_range(1), default=4, help="Boards in parallel.")
    _state(cmd, "MANIFEST.state.json")
    cmd.add_argument("--dry-run", action="store_true", help="Show the plan only.")
    _provision_options(cmd)
