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
   each board's last upload and agent version (admin API); the same live on the dashboard, whose
   URL and viewer sign-in are printed;
6. an over-the-air update: the boards are installed with release 1.0.0, signed by a
   demo release key (`parkctl release keygen`, the service started with `--release-key`); once
   every board uploads, the demo builds 1.1.0 (`parkctl release build`), publishes it and starts
   a rollout with one canary (`parkctl rollout start`). Each board's version change and the
   rollout's progress show in the live view, up to every board confirmed on 1.1.0.
Ctrl-C stops everything the demo started (`--until-updated`: also once the rollout is done).
`--idp oidc` or `--idp auth0` registers the boards in node-oidc-provider or the Auth0 double
instead of the service's own authorization server (tools/demo_idp.py).
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

from provisioning.parkctl.api.client import AdminClient
from provisioning.parkctl.api.tokens import TokenCache
from provisioning.parkctl.registry.render import agent_text
from provisioning.service.auth.secrets import write_private_file
from tools import demo_idp
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
    if done.returncode == 130:  # parkctl's exit on Ctrl-C: the demo stops as it does for its own
        raise KeyboardInterrupt
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
ZONE_SENSOR = {"kind": "file", "path": "cars.txt"}  # the zone board: the count Cars writes
GATE_INTERVAL_S = 1  # a gate board reads (and syncs the beams) this often, s
NORTH_AT_START = 12  # the attendant's count when the demo starts (`parkctl lot recount`)


# The update: boards are installed with FIRST, the demo rolls NEXT out once they all upload.
FIRST, NEXT = "1.0.0", "1.1.0"
UPDATE_AFTER_S = 8  # of the live view with every board uploading, before the update starts
CANARY_WAIT = "5s"  # the canary runs NEXT and keeps uploading this long before the rest


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


class Update(threading.Thread):
    """The over-the-air update, as an operator runs it: once every board uploads, build NEXT
    with the demo's release key, publish it and start a rollout (one canary). Then follow the
    rollout, printing each board's version or update state as it changes, until it is done,
    paused or aborted. `line` is the rollout's state for the live view."""

    def __init__(self, work: Path, key: Path, env: dict[str, str], admin: AdminClient) -> None:
        super().__init__(daemon=True)
        self.work, self.key, self.env, self.admin = work, key, env, admin
        self.stop = threading.Event()
        self.line = f"boards run {FIRST}; the update to {NEXT} starts once every board uploads"
        self.finished = threading.Event()  # the rollout ended (done, paused or aborted)
        self.ok = False

    def _say(self, text: str) -> None:
        console.print(f"[bold cyan]update[/] {text}", soft_wrap=True, highlight=False)

    def run(self) -> None:
        try:
            self._run()
        except (SystemExit, Exception) as error:  # noqa: BLE001 (said, and the demo goes on)
            # A parkctl step or an admin call failed; while the demo stops, that is expected.
            if not self.stop.is_set():
                self.line = "[red]update failed[/] (see above)"
                self._say(f"[red]failed[/]: {error}")
        finally:
            self.finished.set()

    def _run(self) -> None:
        while not self.stop.wait(1.0):
            devices = list(self.admin.iter_devices())
            if devices and all(d.last_seen_at for d in devices):
                break
        else:
            return
        names = {d.client_id: d.name for d in devices}
        self.line = f"every board uploads; the update to {NEXT} starts in {UPDATE_AFTER_S} s"
        if self.stop.wait(UPDATE_AFTER_S):
            return
        out = self.work / f"release-{NEXT}"
        built = _parkctl(
            ["release", "build", "--version", NEXT, "--key", str(self.key), "--out", str(out)],
            env=self.env,
        )
        self._say(f"parkctl release build: {built.strip()}")
        published = _parkctl(["release", "publish", str(out)], env=self.env)
        self._say(f"parkctl release publish: {published.strip()}")
        ids = sorted(names, key=lambda d: names[d])
        started = time.monotonic()
        view = json.loads(
            _parkctl(
                ["rollout", "start", NEXT, "--devices", ",".join(ids), "--canary", "1",
                 "--canary-wait", CANARY_WAIT, "--silence", "60s", "--json"],
                env=self.env,
            )
        )  # fmt: skip
        canary = names[view["boards"][0]["device_id"]]
        self._say(
            f"parkctl rollout start {NEXT}: rollout {view['id']}, canary {canary}; the other "
            f"boards follow once it has run {NEXT} and uploaded for {CANARY_WAIT}"
        )
        seen: dict[str, tuple[Any, Any]] = {}
        while not self.stop.wait(1.0):
            view = self.admin.call_json("GET", f"/admin/rollouts/{view['id']}")
            for b in view["boards"]:
                now = (b["version"], b["state"])
                if seen.get(b["device_id"]) != now:
                    seen[b["device_id"]] = now
                    why = f" ({b['reason']})" if b["reason"] else ""
                    state = b["state"] or "waits for the canary"
                    self._say(f"{names[b['device_id']]}: runs {b['version']}, {state}{why}")
            confirmed = sum(
                b["version"] == NEXT and b["state"] == "confirmed" for b in view["boards"]
            )
            took = time.monotonic() - started
            self.line = (
                f"rollout {view['id']} of {NEXT}: {view['state']}"
                f"{': ' + view['reason'] if view['reason'] else ''}; "
                f"{confirmed}/{len(view['boards'])} boards confirmed; {took:.0f} s since start"
            )
            if view["state"] in ("done", "paused", "aborted"):
                self.ok = view["state"] == "done"
                self._say(self.line)
                return


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


def _view(lots: list[dict[str, Any]], devices: list[Any], started: float, update: str) -> Group:
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
    for column in ("name", "lot", "client_id", "cars / in-out", "seq", "last seen", "agent"):
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
            agent_text(d.agent),
        )
    footer = f"[dim]running {time.monotonic() - started:.0f} s; Ctrl-C stops everything[/]"
    return Group(lot_table, board_table, f"[bold]update:[/] {update}", footer)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, help="stop after S seconds (non-interactive)")
    parser.add_argument("--dir", type=Path, default=REPO / ".park" / "demo")
    parser.add_argument(
        "--until-updated",
        action="store_true",
        help="stop once the update's rollout has ended (exit status 1 unless it is done)",
    )
    parser.add_argument(
        "--idp",
        choices=["oidc", "auth0"],
        help="register the boards in node-oidc-provider (oidc) or the Auth0 double (auth0) "
        "instead of parkfleet's own authorization server",
    )
    options = parser.parse_args()
    if options.idp and options.until_updated:
        parser.error("--until-updated needs the built-in server (no update runs with --idp)")
    # Ctrl-C and SIGTERM both unwind the ExitStack, which stops every process started here;
    # wherever they come (provisioning included), the demo ends with a line, not a traceback.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        ok = _run(options)
    except KeyboardInterrupt:
        ok = not options.until_updated
        console.print("stopping...")
    console.print("\ndemo stopped; everything it started has ended.")
    if options.until_updated and not ok:
        raise SystemExit(1)


def _operator_file(work: Path, url: str, creds: dict[str, str]) -> Path:
    """The operator's credentials for `parkctl`, in an owner-only file (never on the screen
    where anyone behind the operator reads it)."""
    path = work / "operator.env"
    text = (
        f"PARK_SERVER={url}\nPARK_CLIENT_ID={creds['client_id']}\n"
        f"PARK_CLIENT_SECRET={creds['client_secret']}\n"
    )
    write_private_file(path, text.encode())
    return path


def _run(options: argparse.Namespace) -> bool:
    """The demo until Ctrl-C, --duration or the end of the update; whether the update ended
    done."""
    work: Path = options.dir
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    with ExitStack() as stack:
        data = work / "data"
        mqtt = _mqtt_env(stack, work)
        # The operator's release key: the private half stays here, the service gets the public.
        key = work / "release.key"
        console.print(_parkctl(["release", "keygen", "--out", str(key)]).strip(), soft_wrap=True)
        external = demo_idp.start(options.idp, stack, work) if options.idp else None
        if external:
            console.print(f"boards are registered in {external.label}")
        service = stack.enter_context(
            ServiceProcess(
                data,
                port=free_port(),
                env={**mqtt, **(external.service_env if external else {})},
                extra_args=[
                    "--release-key", f"{key}.pub", *(external.service_args if external else [])
                ],
            )
        )  # fmt: skip
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
            **(external.parkctl_env if external else {}),
        }
        idp_args = external.provision_args if external else []
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
        # The boards get a signed release (and with it the key that checks their updates).
        release = work / f"release-{FIRST}"
        built = _parkctl(
            ["release", "build", "--version", FIRST, "--key", str(key), "--out", str(release)]
        )
        console.print(built.strip(), soft_wrap=True)
        console.rule("parkctl fleet provision")
        _parkctl(
            ["fleet", "provision", str(manifest), "--firmware", str(firmware), "--jobs", "3",
             "--interval", "2", "--sensor", json.dumps(ZONE_SENSOR), "--verify-timeout", "60",
             "--release", str(release), *idp_args],
            env=env, capture=False,
        )  # fmt: skip
        _parkctl(
            ["fleet", "provision", str(gate_manifest), "--firmware", str(firmware), "--jobs", "3",
             "--interval", str(GATE_INTERVAL_S), "--sensor", json.dumps(GATE_SENSOR),
             "--verify-timeout", "60", "--release", str(release), *idp_args],
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
        operator = _operator_file(work, service.url, creds)
        console.rule("parkctl")
        console.print(
            f"The operator (admin) [bold]{creds['client_id']}[/bold]: its secret is in "
            f"{operator} (owner-only). To act as it, from another terminal in this directory:\n"
            f"  set -a; . {operator}; set +a\n"
            "  .venv/bin/parkctl device list\n"
            f"(the service is plain HTTP on {service.url}; data dir {data}: `parkctl admin "
            f"create --data-dir {data}` adds an operator while the demo runs)",
            soft_wrap=True,
            highlight=False,
        )
        update = Update(
            work,
            key,
            env,
            stack.enter_context(
                AdminClient(
                    service.url,
                    creds["client_id"],
                    creds["client_secret"],
                    cache=TokenCache(work / "cache"),
                )
            ),
        )
        console.rule("live view")
        if external:
            # Over-the-air downloads need releases:read; a board of an external issuer is
            # granted exactly counts:write there, so the demo shows no update with --idp.
            update.line = "no update: boards of an external issuer hold only counts:write"
        try:
            if not external:
                update.start()
                stack.callback(update.stop.set)
            with Live(console=console, refresh_per_second=2) as live:
                while options.duration is None or time.monotonic() - started < options.duration:
                    lots = httpx.get(
                        f"{service.url}/v1/lots",
                        headers={"Authorization": f"Bearer {token}"},
                        timeout=10,
                    ).json()["lots"]
                    live.update(_view(lots, list(admin.iter_devices()), started, update.line))
                    if options.until_updated and update.finished.is_set():
                        break
                    time.sleep(1.0)
        except KeyboardInterrupt:
            console.print("stopping...")
    return update.ok


if __name__ == "__main__":
    main()
