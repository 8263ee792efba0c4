"""`parkctl board info|flash|install`, `parkctl provision` and `parkctl fleet provision`.

Thin: options are parsed in `fleet.cli` and checked here, the work is done by `esp`, `files` and
`provision`. Every failure is a `ParkctlError`, turned into one message and an exit code by
`parkctl`'s main(). Loaded only when one of these verbs runs: esptool, mpremote's driver, Rich and
the admin API client, never the server stack.
"""

from __future__ import annotations

import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from rich.console import Console
from rich.live import Live
from rich.progress import BarColumn, Progress, TaskID, TaskProgressColumn, TextColumn
from rich.table import Table

from provisioning.errors import ParkctlError
from provisioning.fleet import esp, files
from provisioning.fleet.cli import DEFAULT_SENSOR, NetworkOptions
from provisioning.fleet.config import (
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

out = Console(highlight=False)


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


def board_install(port: str, config: Path, ca_cert: Path | None) -> None:
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


def _network(options: NetworkOptions) -> Network:
    """Where the boards connect, from the options shared by `provision` and `fleet provision`."""
    server, token_url, ingest_url = options.server, options.token_url, options.ingest_url
    ca_cert, password_file = options.ca_cert, options.wifi_password_file
    base = (server or os.environ.get("PARK_SERVER") or "").rstrip("/")
    if not (token_url and ingest_url) and not base:
        raise ParkctlError("give --server (or PARK_SERVER), or both --token-url and --ingest-url")
    try:
        sensor_config = json.loads(options.sensor)
    except ValueError:
        raise ParkctlError("--sensor must be JSON, e.g. " + DEFAULT_SENSOR) from None
    urls = (token_url or f"{base}/oauth/token", ingest_url or base)
    for flag, url in zip(("--token-url", "--ingest-url"), urls, strict=True):
        if not url.startswith(("http://", "https://")):
            raise ParkctlError(f"{flag} {url!r} is not an http:// or https:// URL (boards use it)")
    pem = read_ca_cert(ca_cert) if ca_cert else None
    if pem is None and any(u.startswith("https://") for u in urls):
        out.print("[yellow]note:[/] https URLs without --ca-cert: boards cannot verify the server")
    return Network(
        token_url=urls[0],
        ingest_url=urls[1],
        wifi_ssid=options.wifi_ssid,
        wifi_password=read_secret_file(password_file, "WiFi password") if password_file else "",
        ca_cert_pem=pem,
        interval_s=options.interval,
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
    port: str,
    lot: str,
    firmware: Path,
    name: str | None,
    where: NetworkOptions,
    baud: int | None,
    erase: bool,
    verify_timeout: float,
) -> None:
    """Register, flash, install and verify one board (its identity bound to its MAC)."""
    from provisioning.fleet.manifest import default_name
    from provisioning.registry.schemas import check_lot, check_name

    try:
        job = BoardJob(port, check_lot(lot), check_name(name or default_name(port, lot)))
    except ValueError as error:
        raise ParkctlError(str(error)) from None
    network = _network(where)
    image = load_firmware(firmware)
    with from_environment(where.server) as registry:
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


def fleet_provision(
    manifest: Path,
    firmware: Path,
    jobs: int,
    state: Path | None,
    dry_run: bool,
    where: NetworkOptions,
    baud: int | None,
    erase: bool,
    verify_timeout: float,
) -> None:
    """Provision every board of MANIFEST in parallel; resumable; summary at the end."""
    rows = read_manifest(manifest)
    image = load_firmware(firmware)
    network = _network(where)
    board_jobs = [BoardJob(r.port, r.lot, r.name, r.wifi_ssid) for r in rows]
    fleet_state = FleetState(state or default_state_path(manifest))
    if dry_run:
        _plan(board_jobs, fleet_state, image.chip, image.size, network)
        return
    started = time.monotonic()
    with from_environment(where.server) as registry:
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
