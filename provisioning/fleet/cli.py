"""`parkctl board info|flash|install`, `parkctl provision` and `parkctl fleet provision`.

Thin: options are parsed and checked here, the work is done by `esp`, `files` and `provision`.
Every failure is a `ParkctlError`, turned into one message and an exit code by `parkctl`'s main().
"""

from __future__ import annotations

import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.live import Live
from rich.progress import BarColumn, Progress, TaskID, TaskProgressColumn, TextColumn
from rich.table import Table

from provisioning.errors import ParkctlError
from provisioning.fleet import esp, files
from provisioning.fleet.config import (
    DEFAULT_INTERVAL_S,
    Network,
    read_ca_cert,
    read_secret_file,
    staged_config,
)
from provisioning.fleet.image import load_firmware
from provisioning.fleet.manifest import read_manifest
from provisioning.fleet.provision import BoardJob, BoardResult, Provisioner
from provisioning.fleet.state import STEPS, FleetState, default_state_path
from provisioning.registry.client import AdminClient, from_environment

board_app = typer.Typer(help="One board on a serial port.", no_args_is_help=True)
fleet_app = typer.Typer(help="Many boards from a manifest.", no_args_is_help=True)
out = Console(highlight=False)

Port = Annotated[str, typer.Option("--port", "-p", help="Serial port, pty or socket:// URL.")]
Firmware = Annotated[Path, typer.Option(help="MicroPython .bin for the board's chip.")]
Baud = Annotated[int | None, typer.Option(help="Flashing baud rate (after the stub starts).")]
Erase = Annotated[bool, typer.Option("--erase", help="Erase the whole flash first.")]
Server = Annotated[str | None, typer.Option(help="Service URL (default: $PARK_SERVER).")]
WifiSsid = Annotated[str, typer.Option(help="WiFi network the boards join.")]
WifiPassword = Annotated[
    Path | None, typer.Option(help="File whose first line is the WiFi password.")
]
TokenUrl = Annotated[str | None, typer.Option(help="Default: SERVER/oauth/token.")]
IngestUrl = Annotated[
    str | None,
    typer.Option(help="Ingestion API base (boards POST to it + /v1/counts). Default: SERVER."),
]
CaCert = Annotated[Path | None, typer.Option(help="PEM CA of the service's TLS certificate.")]
Interval = Annotated[int, typer.Option(help="Seconds between readings.")]
Sensor = Annotated[str, typer.Option(help="Sensor config as JSON (see device/README).")]
VerifyTimeout = Annotated[float, typer.Option(help="Seconds to wait for the first upload.")]
DEFAULT_SENSOR = '{"kind": "file", "path": "cars.txt"}'


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.fields[port]:<28}"),
        TextColumn("{task.description:<9}"),
        BarColumn(bar_width=30),
        TaskProgressColumn(),
        TextColumn("{task.fields[detail]}"),
        console=out,
        transient=False,
    )


@board_app.command("info")
def board_info(
    port: Port,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
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


@board_app.command("flash")
def board_flash(port: Port, firmware: Firmware, baud: Baud = None, erase: Erase = False) -> None:
    """Write MicroPython with esptool at the chip's offset and verify it (flash MD5)."""
    image = load_firmware(firmware)
    with _progress() as progress:
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


@board_app.command("install")
def board_install(
    port: Port,
    config: Annotated[Path, typer.Option(help="The board's config.json.")],
    ca_cert: CaCert = None,
) -> None:
    """Copy device/ and the board's config.json with mpremote, then reset the board."""
    try:
        settings = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ParkctlError(f"{config} is not a readable JSON file: {error}") from None
    if not isinstance(settings, dict) or "device_id" not in settings:
        raise ParkctlError(f"{config} is not a board config (no device_id)")
    pem = read_ca_cert(ca_cert) if ca_cert else None
    if pem is not None:
        settings["ca_cert"] = "ca.der"
    with staged_config(settings, pem) as stage, _progress() as progress:
        task = progress.add_task("install", total=None, port=port, detail="")
        count = files.install(
            port,
            sorted(stage.iterdir()),
            progress=lambda n, total: progress.update(task, completed=n, total=total),
        )
    out.print(f"Copied {count} files to {port} and reset the board.")


def _network(
    server: str | None,
    token_url: str | None,
    ingest_url: str | None,
    wifi_ssid: str,
    wifi_password_file: Path | None,
    ca_cert: Path | None,
    interval: int,
    sensor: str,
) -> Network:
    base = (server or os.environ.get("PARK_SERVER") or "").rstrip("/")
    if not (token_url and ingest_url) and not base:
        raise ParkctlError("give --server (or PARK_SERVER), or both --token-url and --ingest-url")
    try:
        sensor_config = json.loads(sensor)
    except ValueError:
        raise ParkctlError("--sensor must be JSON, e.g. " + DEFAULT_SENSOR) from None
    urls = (token_url or f"{base}/oauth/token", ingest_url or base)
    pem = read_ca_cert(ca_cert) if ca_cert else None
    if pem is None and any(u.startswith("https://") for u in urls):
        out.print("[yellow]note:[/] https URLs without --ca-cert: boards cannot verify the server")
    return Network(
        token_url=urls[0],
        ingest_url=urls[1],
        wifi_ssid=wifi_ssid,
        wifi_password=read_secret_file(wifi_password_file, "WiFi password")
        if wifi_password_file
        else "",
        ca_cert_pem=pem,
        interval_s=interval,
        sensor=sensor_config,
    )


def _reason(result: BoardResult) -> str:
    """The failure message without the port it starts with (the port is shown beside it)."""
    return (result.error or "").removeprefix(f"{result.port}: ")


def _summary(results: list[BoardResult], jobs: dict[str, BoardJob]) -> Table:
    table = Table(title="Provisioning summary")
    for column in ("port", "lot", "name", "mac", "client_id", "result", "time"):
        table.add_column(column)
    for r in results:
        job = jobs[r.port]
        if r.ok:
            verdict = "[green]ok[/]" + (" (already done)" if not r.done else "")
            verdict += " (re-registered: new secret)" if r.reused else ""
        else:
            verdict = f"[red]failed at {r.failed_step}[/]: {_reason(r)}"
        seconds = sum(r.timings.values())
        table.add_row(
            r.port,
            job.lot,
            job.name,
            r.mac or "-",
            r.client_id or "-",
            verdict,
            f"{seconds:.1f}s",
        )
    return table


def run_boards(provisioner: Provisioner, jobs: list[BoardJob], parallel: int) -> list[BoardResult]:
    """Provision `jobs` on `parallel` threads with a live Rich progress line per board."""
    progress = _progress()
    tasks: dict[str, TaskID] = {
        job.port: progress.add_task("waiting", total=1.0, port=job.port, detail=job.name)
        for job in jobs
    }

    def one(job: BoardJob) -> BoardResult:
        task = tasks[job.port]

        def report(step: str, fraction: float, detail: str) -> None:
            progress.update(task, description=step, completed=fraction, detail=detail or job.name)

        result = provisioner.run(job, report)
        if result.ok:
            progress.update(task, description="done", completed=1.0)
        else:
            progress.update(task, description="failed", detail=f"at {result.failed_step}")
        return result

    with (
        Live(progress, console=out, refresh_per_second=8, transient=False),
        ThreadPoolExecutor(max_workers=max(1, parallel)) as pool,
    ):
        return list(pool.map(one, jobs))


def provision_command(
    port: Port,
    lot: Annotated[str, typer.Option(help="Parking lot the board counts for.")],
    firmware: Firmware,
    name: Annotated[str | None, typer.Option(help="Board name (default: LOT-PORT).")] = None,
    wifi_ssid: WifiSsid = "",
    wifi_password_file: WifiPassword = None,
    server: Server = None,
    token_url: TokenUrl = None,
    ingest_url: IngestUrl = None,
    ca_cert: CaCert = None,
    baud: Baud = None,
    erase: Erase = False,
    interval: Interval = DEFAULT_INTERVAL_S,
    sensor: Sensor = DEFAULT_SENSOR,
    verify_timeout: VerifyTimeout = 90.0,
) -> None:
    """Register, flash, install and verify one board (its identity bound to its MAC)."""
    from provisioning.fleet.manifest import default_name
    from provisioning.registry.schemas import check_lot, check_name

    try:
        job = BoardJob(port, check_lot(lot), check_name(name or default_name(port, lot)))
    except ValueError as error:
        raise ParkctlError(str(error)) from None
    network = _network(
        server, token_url, ingest_url, wifi_ssid, wifi_password_file, ca_cert, interval, sensor
    )
    image = load_firmware(firmware)
    with from_environment(server) as registry:
        _preflight(registry)
        provisioner = Provisioner(registry, image, network, None, baud, erase, verify_timeout)
        [result] = run_boards(provisioner, [job], 1)
    out.print(_summary([result], {job.port: job}))
    if not result.ok:
        raise ParkctlError(_next_steps([result]))


def _preflight(registry: AdminClient) -> None:
    """Reach the server with the operator's credentials before any board is touched."""
    registry.list_devices(limit=1)


def _next_steps(failed: list[BoardResult]) -> str:
    lines = [f"{len([r for r in failed if not r.ok])} board(s) failed:"]
    for r in failed:
        if r.ok:
            continue
        registered = f" (registered as {r.client_id})" if r.client_id else ""
        lines.append(f"  {r.port}{registered}: {r.failed_step}: {_reason(r)}")
    lines.append("Fix the cause and re-run the same command: finished steps are not repeated.")
    return "\n".join(lines)


@fleet_app.command("provision")
def fleet_provision(
    manifest: Annotated[Path, typer.Argument(help="CSV: port,lot,name[,wifi_ssid].")],
    firmware: Firmware,
    jobs: Annotated[int, typer.Option("--jobs", "-j", min=1, help="Boards in parallel.")] = 4,
    state: Annotated[Path | None, typer.Option(help="Default: MANIFEST.state.json.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show the plan only.")] = False,
    wifi_ssid: WifiSsid = "",
    wifi_password_file: WifiPassword = None,
    server: Server = None,
    token_url: TokenUrl = None,
    ingest_url: IngestUrl = None,
    ca_cert: CaCert = None,
    baud: Baud = None,
    erase: Erase = False,
    interval: Interval = DEFAULT_INTERVAL_S,
    sensor: Sensor = DEFAULT_SENSOR,
    verify_timeout: VerifyTimeout = 90.0,
) -> None:
    """Provision every board of MANIFEST in parallel; resumable; summary at the end."""
    rows = read_manifest(manifest)
    image = load_firmware(firmware)
    network = _network(
        server, token_url, ingest_url, wifi_ssid, wifi_password_file, ca_cert, interval, sensor
    )
    board_jobs = [BoardJob(r.port, r.lot, r.name, r.wifi_ssid) for r in rows]
    fleet_state = FleetState(state or default_state_path(manifest))
    if dry_run:
        _plan(board_jobs, fleet_state, image.chip, image.size, network)
        return
    started = time.monotonic()
    with from_environment(server) as registry:
        _preflight(registry)
        provisioner = Provisioner(
            registry, image, network, fleet_state, baud, erase, verify_timeout
        )
        results = run_boards(provisioner, board_jobs, jobs)
    out.print(_summary(results, {j.port: j for j in board_jobs}))
    ok = sum(r.ok for r in results)
    out.print(
        f"{ok}/{len(results)} boards ready in {time.monotonic() - started:.1f} s; "
        f"state in {fleet_state.path}"
    )
    if ok < len(results):
        raise ParkctlError(_next_steps(results))


def _plan(jobs: list[BoardJob], state: FleetState, chip: str, size: int, network: Network) -> None:
    table = Table(title=f"Plan (dry run): {chip} firmware, {size} bytes; nothing is touched")
    for column in ("port", "lot", "name", "wifi", "steps to run", "done before"):
        table.add_column(column)
    for job in jobs:
        done = state.done(job.port)
        todo = [s for s in STEPS if s not in done] or ["nothing"]
        table.add_row(
            job.port,
            job.lot,
            job.name,
            job.wifi_ssid or network.wifi_ssid or "-",
            ", ".join(todo),
            ", ".join(done) or "-",
        )
    out.print(table)
    out.print(f"token URL {network.token_url}, ingest URL {network.ingest_url}")
