"""`make demo`: the whole product on one machine, until Ctrl-C (or `--duration S`).

1. the service on SQLite in `.park/demo/` (and Mosquitto from broker-config/ when installed);
2. an operator made with `parkctl admin create`, the lots of examples/demo-lots.csv (capacity,
   label) made with `parkctl lot create`, and a viewer for the dashboard at /ui/;
3. three simulated ESP32 boards (tools/simboard) provisioned by `parkctl fleet provision` from
   examples/demo-manifest.csv (its `sim-N` ports are replaced by the simulators' socket:// URLs);
4. their agents run under the MicroPython Unix port while the demo changes each board's car count
   (the file sensor reads `cars.txt`);
5. a live view of each lot's occupancy (GET /v1/lots, capacities from the lots' records) and
   each board's last upload (admin API); the same live on the dashboard, whose URL and viewer
   sign-in are printed.
Ctrl-C stops everything the demo started.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import random
import shutil
import signal
import threading
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from provisioning.registry.client import AdminClient, TokenCache
from tools.harness.mosquitto import MosquittoBroker
from tools.harness.net import free_port
from tools.harness.parkctl import parkctl
from tools.harness.server import ServiceProcess
from tools.harness.services import ServiceMissing
from tools.simboard import SimBoard, make_firmware_image

REPO = Path(__file__).resolve().parents[1]

MANIFEST = REPO / "examples" / "demo-manifest.csv"
LOTS = REPO / "examples" / "demo-lots.csv"
console = Console()


def _parkctl(args: list[str], env: dict[str, str] | None = None, capture: bool = True) -> str:
    done = parkctl(*args, env=env, timeout=None, capture=capture)
    if done.returncode != 0:
        raise SystemExit(f"parkctl {args[0]} {args[1]} failed:\n{done.stderr or ''}")
    return done.stdout or ""


def _mqtt_env(stack: ExitStack, work: Path) -> dict[str, str]:
    """PARK_MQTT_URL for the service when Mosquitto is installed: the broker runs from the
    project's broker-config/ (tools/harness/mosquitto.py is the one launcher for it)."""
    try:
        broker = stack.enter_context(MosquittoBroker(work / "mosquitto"))
    except ServiceMissing:
        console.print("[dim]Mosquitto not installed: the service runs without MQTT[/]")
        return {}
    console.print(f"Mosquitto on 127.0.0.1:{broker.port} (config from broker-config/)")
    # In the environment, not on the command line: `ps` would show the broker password.
    return {"PARK_MQTT_URL": broker.url()}


class Cars(threading.Thread):
    """Changes each board's car count now and then, as cars come and go."""

    def __init__(self, boards: dict[str, tuple[SimBoard, str]], capacity: dict[str, int]) -> None:
        super().__init__(daemon=True)
        self.boards = boards
        self.capacity = capacity
        self.stop = threading.Event()
        self.count = {name: random.randrange(5, 30) for name in boards}

    def run(self) -> None:
        while not self.stop.is_set():
            for name, (board, lot) in self.boards.items():
                # Each lot's boards share its spaces: keep every board's count below its share.
                share = sum(1 for _b, other in self.boards.values() if other == lot)
                cap = self.capacity.get(lot, 100) // max(share, 1)
                self.count[name] = max(0, min(cap, self.count[name] + random.randint(-3, 4)))
                tmp = board.fs_dir / "cars.txt.tmp"
                tmp.write_text(f"{self.count[name]}\n")
                os.replace(tmp, board.fs_dir / "cars.txt")
            self.stop.wait(2.0)


def _reader_token(url: str, client_id: str, secret: str) -> str:
    """An operator token for the ingestion API's read side (counts:read)."""
    basic = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    response = httpx.post(
        f"{url}/oauth/token",
        data={"grant_type": "client_credentials", "audience": "parkfleet-ingest"},
        headers={"Authorization": f"Basic {basic}"},
        timeout=10,
    )
    response.raise_for_status()
    return str(response.json()["access_token"])


def _view(lots: list[dict[str, Any]], devices: list[Any], started: float) -> Group:
    lot_table = Table(title="Lots")
    for column in ("lot", "cars", "capacity", "occupancy", "boards"):
        lot_table.add_column(column)
    for lot in lots:
        cap = lot.get("capacity")  # from the lot's record (`parkctl lot create`)
        if cap:
            share = min(lot["cars"] / cap, 1.0)
            bar = "█" * round(share * 20) + "·" * (20 - round(share * 20)) + f" {share:4.0%}"
        else:
            bar = "-"
        lot_table.add_row(lot["lot"], str(lot["cars"]), str(cap or "-"), bar, str(lot["devices"]))
    board_table = Table(title="Boards")
    for column in ("name", "lot", "client_id", "cars", "seq", "last upload"):
        board_table.add_column(column)
    now = time.time()
    for d in sorted(devices, key=lambda d: d.name):
        r = d.reading
        board_table.add_row(
            d.name,
            d.lot,
            d.client_id,
            str(r.cars) if r else "-",
            str(r.seq) if r else "-",
            f"{now - r.received_at:.0f} s ago" if r and r.received_at else "never",
        )
    footer = f"[dim]running {time.monotonic() - started:.0f} s; Ctrl-C stops everything[/]"
    return Group(lot_table, board_table, footer)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, help="stop after S seconds (non-interactive)")
    parser.add_argument("--dir", type=Path, default=REPO / ".park" / "demo")
    options = parser.parse_args()
    work: Path = options.dir
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    # Ctrl-C and SIGTERM both unwind the ExitStack, which stops every process started here.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    with ExitStack() as stack:
        data = work / "data"
        mqtt = _mqtt_env(stack, work)
        service = stack.enter_context(ServiceProcess(data, port=free_port(), env=mqtt))
        console.print(f"service on {service.url} (data in {data})")
        creds = json.loads(
            _parkctl(["admin", "create", "--data-dir", str(data), "--name", "demo", "--json"])
        )
        env = {
            **os.environ,
            "PARK_SERVER": service.url,
            "PARK_CLIENT_ID": creds["client_id"],
            "PARK_CLIENT_SECRET": creds["client_secret"],
            "PARK_CACHE_DIR": str(work / "cache"),
        }
        capacity: dict[str, int] = {}
        for row in LOTS.read_text().splitlines()[1:]:
            name, cap, label = row.split(",", 2)
            _parkctl(["lot", "create", name, "--capacity", cap, "--label", label], env=env)
            capacity[name] = int(cap)
        viewer = json.loads(
            _parkctl(
                ["admin", "create", "--data-dir", str(data), "--name", "wall", "--role", "viewer",
                 "--json"]
            )
        )  # fmt: skip
        rows = MANIFEST.read_text().splitlines()
        boards: dict[str, tuple[SimBoard, str]] = {}
        manifest = work / "manifest.csv"
        lines = [rows[0]]
        for i, row in enumerate(rows[1:], start=1):
            port, lot, name = row.split(",")
            board = stack.enter_context(
                SimBoard(work / port, chip="esp32", mac=f"24:0a:c4:de:00:{i:02x}")
            )
            boards[name] = (board, lot)
            lines.append(f"{board.url},{lot},{name}")
        manifest.write_text("\n".join(lines) + "\n")
        cars = Cars(boards, capacity)
        for name, (board, _lot) in boards.items():
            board.fs_dir.mkdir(parents=True, exist_ok=True)
            (board.fs_dir / "cars.txt").write_text(f"{cars.count[name]}\n")
        firmware = work / "ESP32_GENERIC-v1.24.1.bin"
        make_firmware_image(firmware, chip="esp32", size=256 * 1024)
        console.rule("parkctl fleet provision")
        _parkctl(
            ["fleet", "provision", str(manifest), "--firmware", str(firmware), "--jobs", "3",
             "--interval", "2", "--verify-timeout", "60"],
            env=env, capture=False,
        )  # fmt: skip
        cars.start()
        stack.callback(cars.stop.set)
        admin = stack.enter_context(
            AdminClient(
                service.url,
                creds["client_id"],
                creds["client_secret"],
                cache=TokenCache(work / "cache"),
            )
        )
        token = _reader_token(service.url, creds["client_id"], creds["client_secret"])
        started = time.monotonic()
        console.rule("dashboard")
        console.print(
            f"Open [bold]{service.url}/ui/[/bold] and sign in as the viewer:\n"
            f"  client ID     {viewer['client_id']}\n"
            f"  client secret {viewer['client_secret']}",
            soft_wrap=True,
        )
        console.rule("live view")
        try:
            with Live(console=console, refresh_per_second=2) as live:
                while options.duration is None or time.monotonic() - started < options.duration:
                    lots = httpx.get(
                        f"{service.url}/v1/lots",
                        headers={"Authorization": f"Bearer {token}"},
                        timeout=10,
                    ).json()["lots"]
                    live.update(_view(lots, list(admin.iter_devices()), started))
                    time.sleep(1.0)
        except KeyboardInterrupt:
            console.print("stopping...")
    console.print("\ndemo stopped; everything it started has ended.")


if __name__ == "__main__":
    main()
