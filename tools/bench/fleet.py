"""`make bench`: how fast the fleet tool provisions boards, and where the time goes.

N simulated ESP32 boards whose serial links are throttled to a real UART rate (the simulator's
baud limit, following esptool's change of baud rate) are provisioned in parallel against the real
service: register, flash a MicroPython-sized image with the stub at 460800 baud, install the agent
with mpremote, verify its first token and upload on the console. Rows: boards per minute, and the
mean and max seconds per step.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from statistics import mean
from typing import Any

from provisioning.parkctl.api.client import AdminClient
from provisioning.parkctl.api.tokens import TokenCache
from provisioning.parkctl.fleet.config import Network
from provisioning.parkctl.fleet.image import load_firmware
from provisioning.parkctl.fleet.provision import BoardJob, BoardResult, Provisioner
from tools.harness.parkctl import parkctl
from tools.harness.server import ServiceProcess
from tools.simboard import SimBoard, make_firmware_image

BOARDS = int(os.environ.get("BENCH_FLEET_BOARDS", "4"))
FLASH_BAUD = 460800  # esptool's default flashing rate on real USB-serial bridges
LINK_BAUD_LIMIT = FLASH_BAUD  # the link runs at most this fast, and at the UART rate set
FIRMWARE_SIZE = 1536 * 1024  # a generic ESP32 MicroPython build is about 1.5 MB
STEPS = ("register", "flash", "install", "verify")
FILE_SENSOR = {"kind": "file", "path": "cars.txt"}  # simulated boards: the file they are given


def _operator(data: Path) -> tuple[str, str]:
    made = parkctl(
        "admin", "create", "--db", f"sqlite:///{data / 'parkfleet.db'}", "--data-dir", str(data),
        "--name", "bench", "--json",
    )  # fmt: skip
    made.check_returncode()
    creds = json.loads(made.stdout)
    return creds["client_id"], creds["client_secret"]


def _provision(boards: int, work: Path) -> tuple[float, list[BoardResult]]:
    firmware = work / "firmware.bin"
    make_firmware_image(firmware, chip="esp32", size=FIRMWARE_SIZE)
    image = load_firmware(firmware)
    with ExitStack() as stack:
        service = stack.enter_context(ServiceProcess(work / "data"))
        client_id, secret = _operator(work / "data")
        admin = stack.enter_context(
            AdminClient(service.url, client_id, secret, cache=TokenCache(work / "cache"))
        )
        sims = [
            stack.enter_context(
                SimBoard(
                    work / f"board{i}",
                    chip="esp32",
                    mac=f"24:0a:c4:00:b0:{i:02x}",
                    baud_limit=LINK_BAUD_LIMIT,
                )
            )
            for i in range(boards)
        ]
        for i, board in enumerate(sims):
            (board.fs_dir / "cars.txt").write_text(f"{i}\n")  # what the file sensor reads
        network = Network(
            f"{service.url}/oauth/token", service.url, interval_s=1, sensor=dict(FILE_SENSOR)
        )
        provisioner = Provisioner(admin, image, network, baud=FLASH_BAUD, verify_timeout=60)
        jobs = [BoardJob(b.url, "bench", f"bench-{i}") for i, b in enumerate(sims)]
        start = time.monotonic()
        with ThreadPoolExecutor(max_workers=boards) as pool:
            results = list(pool.map(provisioner.run, jobs))
        return time.monotonic() - start, results


def run() -> list[dict[str, Any]]:
    """Rows for tools/bench/__main__.py: {bench, metric, value, unit, ...}."""
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-fleet-") as tmp:
        elapsed, results = _provision(BOARDS, Path(tmp))
    failed = [r for r in results if not r.ok]
    common = {"bench": "fleet", "boards": BOARDS, "baud": FLASH_BAUD, "firmware": FIRMWARE_SIZE}
    rows.append({**common, "metric": "boards_per_minute", "value": round(
        60 * (len(results) - len(failed)) / elapsed, 2), "unit": "boards/min"})  # fmt: skip
    rows.append({**common, "metric": "wall_time", "value": round(elapsed, 2), "unit": "s"})
    for step in STEPS:
        times = [r.timings[step] for r in results if step in r.timings]
        if times:
            rows.append({**common, "metric": f"{step}_mean", "value": round(mean(times), 2),
                         "unit": "s", "max": round(max(times), 2)})  # fmt: skip
    if failed:
        errors = [f"{r.failed_step}: {r.error}" for r in failed]
        rows.append({**common, "metric": "failed", "value": len(failed), "unit": "boards",
                     "ok": False, "errors": errors})  # fmt: skip
    return rows


if __name__ == "__main__":
    for row in run():
        print(json.dumps(row))
