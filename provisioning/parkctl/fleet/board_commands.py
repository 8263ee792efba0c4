"""`parkctl board info|flash|install`: one board on a serial port.

Thin: options are parsed in `fleet.cli` and checked here, the work is done by `esp` (esptool) and
`files` (mpremote). Every failure is a `ParkctlError`, turned into one message and an exit code
by `parkctl`'s main(). Loaded only when a board verb runs: esptool, the mpremote driver and Rich,
neither the admin API client nor the server stack.
"""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn
from rich.table import Table

from provisioning.common.bundle import install_plan
from provisioning.common.errors import ParkctlError
from provisioning.parkctl.fleet import esp, files
from provisioning.parkctl.fleet.config import read_ca_cert, staged_config
from provisioning.parkctl.fleet.image import load_firmware

out = Console(highlight=False)


def progress_bars() -> Progress:
    """One progress line per board: port, step, bar, percentage, detail."""
    return Progress(
        TextColumn("{task.fields[port]:<28}"),
        TextColumn("{task.description:<9}"),
        BarColumn(bar_width=30),
        TaskProgressColumn(),
        TextColumn("{task.fields[detail]}"),
        console=out,
        transient=False,
    )


def board_info(port: str, as_json: bool) -> None:
    """Chip, MAC and flash size (esptool), MicroPython and the agent (mpremote)."""
    with esp.connect(port) as loader:
        info = esp.chip_info(loader)
        firmware = esp.has_firmware(loader)
        esp.start_app(loader, port)
    facts: dict[str, object] = {
        "port": port,
        "chip": info.description,
        "mac": info.mac,
        "flash_size": info.flash_size,
        "micropython": None,
        "agent": False,
    }
    if not firmware:
        facts["why"] = "no firmware image in flash (parkctl board flash)"
    else:
        try:
            on_board = files.board_files(port)
            facts |= {
                "micropython": on_board.micropython,
                "agent": on_board.agent_installed,
                "files": on_board.files,
            }
        except ParkctlError as error:
            facts["why"] = error.message
    if as_json:
        out.print_json(data=facts)
        return
    table = Table(show_header=False, box=None)
    for key, value in facts.items():
        table.add_row(key, "-" if value is None else str(value))
    out.print(table)


def board_flash(port: str, firmware: Path, baud: int | None, erase: bool) -> None:
    """Write MicroPython with esptool at the chip's offset and verify it (flash MD5)."""
    image = load_firmware(firmware)
    with progress_bars() as progress:
        task = progress.add_task("flash", total=image.size, port=port, detail="")
        with esp.connect(port) as loader:
            result = esp.flash_firmware(
                loader,
                image,
                baud=baud,
                erase=erase,
                progress=lambda n, t: progress.update(task, completed=n, total=t),
            )
            esp.start_app(loader, port)
    out.print(
        f"Wrote {result.size} bytes of {firmware.name} at 0x{result.offset:x}; "
        "verified: the flash MD5 matches the file."
    )


def board_install(port: str, config: Path, ca_cert: Path | None, release: Path | None) -> None:
    """Copy a release (built now without `release`) and the board's config.json with mpremote,
    then reset the board; a release's public key goes into config.json as release_key."""
    try:
        settings = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ParkctlError(f"{config} is not a readable JSON file: {error}") from None
    if not isinstance(settings, dict) or "device_id" not in settings:
        raise ParkctlError(f"{config} is not a board config (no device_id)")
    pem = read_ca_cert(ca_cert) if ca_cert else None
    if pem is not None:
        settings["ca_cert"] = "ca.der"
    plan = install_plan(release)
    if plan.release_key:
        settings["release_key"] = plan.release_key
    with staged_config(settings, pem) as stage, progress_bars() as progress:
        task = progress.add_task("install", total=None, port=port, detail="")
        count = files.install(
            port,
            sorted(stage.iterdir()),
            plan,
            progress=lambda n, total: progress.update(task, completed=n, total=total),
        )
    out.print(f"Copied {count} files to {port} and reset the board.")
