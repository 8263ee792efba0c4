"""`make demo`: the whole product on one machine, until Ctrl-C (or `--duration S`).

1. the service on SQLite in `.park/demo/` (and Mosquitto from broker-config/ when installed);
2. an operator made with `parkctl admin create`, the lots of examples/demo-lots.csv (capacity,
   label) made with `parkctl lot create`, and a viewer for the dashboard at /ui/;
3. three simulated ESP32 boards (tools/simboard) provisioned by `parkctl fleet provision` from
   examples/demo-manifest.csv (its `sim-N` ports are replaced by the simulators' socket:// URLs);
4. their agents run under the MicroPython Unix port. The north lot is built the common way: an
   entrance board and an exit board with the real gate sensor (device/gate.py: two light
   barriers), driven by simulated cars breaking and clearing the beams (the pin files of
   tools/unixport), and a recount at start; the south lot has a zone board whose file sensor
   (`cars.txt`) the demo changes as cars come and go;
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


GATE_SENSOR = {"kind": "gate", "pin_a": 12, "pin_b": 13, "debounce_ms": 10}
GATE_INTERVAL_S = 1  # a gate board reads (and syncs the beams) this often, s
NORTH_AT_START = 12  # the attendant's count when the demo starts (`parkctl lot recount`)


def _is_gate(name: str) -> bool:
    return name.endswith(("-entrance", "-exit"))


class GateTraffic(threading.Thread):
    """Cars through one gate board's lane: each breaks beam A, then A and B, then B, then
    clears (the reverse on the way out), as the real sensor's pins (active low) would see."""

    STEPS = ((0, 1), (0, 0), (1, 0), (1, 1))  # (pin_a, pin_b) levels, a car going in

    def __init__(self, pins: Path, inward: bool, lot: list[int], capacity: int) -> None:
        super().__init__(daemon=True)
        self.pins, self.inward, self.lot, self.capacity = pins, inward, lot, capacity
        self.stop = threading.Event()
        self._beams(1, 1)

    def _beams(self, a: int, b: int) -> None:
        for pin, level in ((12, a), (13, b)):
            tmp = self.pins / f"pin{pin}.tmp"
            tmp.write_text(str(level))
            os.replace(tmp, self.pins / f"pin{pin}")

    def run(self) -> None:
        while not self.stop.wait(random.uniform(1.0, 4.0)):
            # More arrivals while the lot is empty, more departures while it is full.
            full = self.lot[0] >= self.capacity
            if full if self.inward else self.lot[0] <= 0:
                continue
            for a, b in self.STEPS if self.inward else tuple((b, a) for a, b in self.STEPS):
                self._beams(a, b)
                # Held past a reading: the main loop's sync() sees every step.
                if self.stop.wait(GATE_INTERVAL_S * 2.2):
                    return
            self.lot[0] += 1 if self.inward else -1


class Cars(threading.Thread):
    """Changes each zone board's car count now and then, as cars come and go."""

    def __init__(self, boards: dict[str, tuple[SimBoard, str]], capacity: dict[str, int]) -> None:
        super().__init__(daemon=True)
        self.boards = boards
        self.capacity = capacity
        self.stop = threading.Event()
        self.count = {name: random.randrange(5, 30) for name in boards}

    def run(self) -> None:
        while not self.stop.is_set():
            for name, (board, lot) in self.boards.items():
                if _is_gate(name):
                    continue
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
    for column in ("lot", "cars", "capacity", "occupancy", "boards", "baseline + flows"):
        lot_table.add_column(column)
    for lot in lots:
        cap = lot.get("capacity")  # from the lot's record (`parkctl lot create`)
        if cap:
            share = min(lot["cars"] / cap, 1.0)
            bar = "█" * round(share * 20) + "·" * (20 - round(share * 20)) + f" {share:4.0%}"
        else:
            bar = "-"
        flows = " ".join(f"+{f['in']}-{f['out']}" for f in lot.get("flows", []))
        made_of = f"{lot.get('baseline', 0)} {flows}" if flows else "-"
        if lot.get("drift"):
            made_of += " [red]drift: recount[/]"
        lot_table.add_row(
            lot["lot"], str(lot["cars"]), str(cap or "-"), bar, str(lot["devices"]), made_of
        )
    board_table = Table(title="Boards")
    for column in ("name", "lot", "client_id", "cars / in-out", "seq", "last seen"):
        board_table.add_column(column)
    now = time.time()
    for d in sorted(devices, key=lambda d: d.name):
        r, c = d.reading, d.counters
        seen = d.last_seen_at
        board_table.add_row(
            d.name,
            d.lot,
            d.client_id,
            f"in {c.gate_in} out {c.gate_out}" if c else str(r.cars) if r else "-",
            str(c.seq if c else r.seq) if c or r else "-",
            f"{now - seen:.0f} s ago" if seen else "never",
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
        gate_lines = [rows[0]]
        pins: dict[str, Path] = {}
        for i, row in enumerate(rows[1:], start=1):
            port, lot, name = row.split(",")
            board_env = None
            if _is_gate(name):
                pins[name] = work / f"pins-{name}"
                pins[name].mkdir()
                board_env = {"PARKSIM_PIN_DIR": str(pins[name])}
            board = stack.enter_context(
                SimBoard(work / port, chip="esp32", mac=f"24:0a:c4:de:00:{i:02x}", env=board_env)
            )
            boards[name] = (board, lot)
            (gate_lines if _is_gate(name) else lines).append(f"{board.url},{lot},{name}")
        manifest.write_text("\n".join(lines) + "\n")
        gate_manifest = work / "gates.csv"
        gate_manifest.write_text("\n".join(gate_lines) + "\n")
        north = [NORTH_AT_START]  # the demo's own idea of the north lot, to keep it in range
        traffic = [
            GateTraffic(path, name.endswith("-entrance"), north, capacity.get("north", 100))
            for name, path in pins.items()
        ]
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
        _parkctl(
            ["fleet", "provision", str(gate_manifest), "--firmware", str(firmware), "--jobs", "3",
             "--interval", str(GATE_INTERVAL_S), "--sensor", json.dumps(GATE_SENSOR),
             "--verify-timeout", "60"],
            env=env, capture=False,
        )  # fmt: skip
        # The attendant counts the north lot once its gate boards are up; they count from here.
        console.print(
            _parkctl(["lot", "recount", "north", str(NORTH_AT_START)], env=env).strip(),
            soft_wrap=True,
        )
        cars.start()
        stack.callback(cars.stop.set)
        for thread in traffic:
            thread.start()
            stack.callback(thread.stop.set)
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
