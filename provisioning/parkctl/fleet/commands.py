"""`parkctl provision` and `parkctl fleet provision`: boards from blank to counting.

Thin: options are parsed in `fleet.cli` and checked here, the work is done by `provision`. Every
failure is a `ParkctlError`, turned into one message and an exit code by `parkctl`'s main().
Loaded only when one of these verbs runs: esptool, the mpremote driver, Rich and the admin API
client, never the server stack.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from rich.live import Live
from rich.progress import TaskID
from rich.table import Table

from provisioning.common.errors import ParkctlError
from provisioning.parkctl.api.client import AdminClient, from_environment
from provisioning.parkctl.api.tokens import default_cache_dir
from provisioning.parkctl.fleet.board_commands import out, progress_bars
from provisioning.parkctl.fleet.config import (
    DEFAULT_SENSOR,
    Network,
    ProvisionOptions,
    read_ca_cert,
    read_secret_file,
)
from provisioning.parkctl.fleet.image import FirmwareImage, load_firmware
from provisioning.parkctl.fleet.manifest import read_manifest
from provisioning.parkctl.fleet.provision import BoardJob, BoardResult, Provisioner
from provisioning.parkctl.fleet.state import STEPS, FleetState, default_state_path
from provisioning.parkctl.idp.twosided import TwoSided


def _network(options: ProvisionOptions) -> Network:
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
        release=options.release,
    )


def _reason(result: BoardResult) -> str:
    """The failure message without the port it starts with (the port is shown beside it)."""
    return (result.error or "").removeprefix(f"{result.port}: ")


def _summary(results: list[BoardResult], jobs: dict[str, BoardJob]) -> Table:
    """One row per board in 80 columns: the reasons of failures follow the table (the
    `_next_steps` message), the MAC is in the state file. `time` is wall time, from the
    board's first step to its end (a failed wait for the first upload counts in full)."""
    table = Table(title="Provisioning summary")
    table.add_column("port", overflow="fold", max_width=22)
    table.add_column("board", overflow="fold", max_width=18)
    table.add_column("client_id", overflow="fold")
    table.add_column("result", overflow="fold", max_width=16)
    table.add_column("time", justify="right", no_wrap=True)
    for r in results:
        job = jobs[r.port]
        if r.ok:
            verdict = "[green]ok[/]" + (" (done before)" if not r.done else "")
            verdict += " (new secret)" if r.reused else ""
        else:
            verdict = f"[red]failed at {r.failed_step}[/]"
        table.add_row(
            r.port, f"{job.name}\n[dim]{job.lot}[/]", r.client_id or "-", verdict,
            f"{r.elapsed:.1f} s",
        )  # fmt: skip
    return table


def run_boards(provisioner: Provisioner, jobs: list[BoardJob], parallel: int) -> list[BoardResult]:
    """Provision `jobs` on `parallel` threads with a live Rich progress line per board."""
    progress = progress_bars()
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
        results = list(pool.map(one, jobs))
    if not out.is_terminal:
        out.line()  # Live's last frame ends without a newline when the output is not a terminal
    return results


def provision_command(
    port: str,
    lot: str,
    firmware: Path,
    name: str | None,
    options: ProvisionOptions,
    state: Path | None = None,
) -> None:
    """Register, flash, install and verify one board (its identity bound to its MAC); a
    re-run after a failure resumes from the step that failed (state file, no secrets)."""
    from provisioning.common.rules import check_lot, check_name
    from provisioning.parkctl.fleet.manifest import default_name

    try:
        job = BoardJob(port, check_lot(lot), check_name(name or default_name(port, lot)))
    except ValueError as error:
        raise ParkctlError(str(error)) from None
    network = _network(options)
    image = load_firmware(firmware)
    fleet_state = FleetState(state or default_cache_dir() / "provision.state.json")
    with _provisioner(options, image, network, fleet_state) as provisioner:
        if fleet_state.done(port) == list(STEPS):
            # Provisioning a finished board again is asked for: all steps, a new secret. Only a
            # run that failed is resumed.
            fleet_state.forget(port, *STEPS)
        [result] = run_boards(provisioner, [job], 1)
    out.print(_summary([result], {job.port: job}))
    if not result.ok:
        raise ParkctlError(_next_steps([result]))


@contextlib.contextmanager
def _provisioner(
    options: ProvisionOptions, image: FirmwareImage, network: Network, state: FleetState
) -> Iterator[Provisioner]:
    """A run's `Provisioner`, on the admin API with the operator's credentials (and with
    `--idp` the external server), both reached and checked before any board is touched."""
    with (
        from_environment(options.server) as registry,
        _external(registry, options.idp_url) as external,
    ):
        _preflight(registry)
        yield Provisioner(
            registry, image, network, state, options.baud, options.erase,
            options.verify_timeout, external,
        )  # fmt: skip


@contextlib.contextmanager
def _external(registry: AdminClient, idp_url: str | None) -> Iterator[TwoSided | None]:
    """With `--idp`: the external server, checked against the service before any board is
    touched (it must be trusted, and the service names the ingest audience)."""
    if idp_url is None:
        yield None
        return
    from provisioning.parkctl.idp import open_idp

    idp = open_idp(idp_url)
    try:
        yield TwoSided(registry, idp)
    finally:
        idp.close()


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
    options: ProvisionOptions,
) -> None:
    """Provision every board of MANIFEST in parallel; resumable; summary at the end."""
    rows = read_manifest(manifest)
    image = load_firmware(firmware)
    network = _network(options)
    board_jobs = [BoardJob(r.port, r.lot, r.name, r.wifi_ssid) for r in rows]
    fleet_state = FleetState(state or default_state_path(manifest))
    if dry_run:
        _plan(board_jobs, fleet_state, image.chip, image.size, network, options.idp_url)
        return
    started = time.monotonic()
    with _provisioner(options, image, network, fleet_state) as provisioner:
        results = run_boards(provisioner, board_jobs, jobs)
    out.print(_summary(results, {j.port: j for j in board_jobs}))
    ok = sum(r.ok for r in results)
    out.print(
        f"{ok}/{len(results)} boards ready in {time.monotonic() - started:.1f} s; "
        f"state in {fleet_state.path}"
    )
    if ok < len(results):
        raise ParkctlError(_next_steps(results))


def _plan(
    jobs: list[BoardJob],
    state: FleetState,
    chip: str,
    size: int,
    network: Network,
    idp: str | None = None,
) -> None:
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
    tokens = f"clients of {idp} (registered there)" if idp else f"token URL {network.token_url}"
    out.print(f"{tokens}, ingest URL {network.ingest_url}")
