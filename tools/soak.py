"""`make soak`: real agents through HAProxy to three instances, with faults on a schedule.

Each board is the agent under the MicroPython Unix port at a board-sized 64 KB heap, one reading
every 10 s, reaching HAProxy through the fault proxy (tools/harness/proxy.py: the boards' network).
While they run, a schedule kills an instance (-9, back after 30 s), restarts Mosquitto, stops
PostgreSQL for 30 s, cuts the boards' network for 60 s, rotates the signing key, disables five
boards and reboots ten. At the end the boards drain their spools and the report compares what
they produced (their spools) with what was stored and what a subscriber heard over MQTT.

The checks and figures are in tools/soakreport.py; the exit status is 1 unless every check holds.
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text

from provisioning.service.registry import service as registry
from provisioning.store.db import make_engine, session_factory
from tools.cluster import Cluster
from tools.harness.agent import AgentProcess, board_config, micropython_env
from tools.harness.clients import register_devices
from tools.harness.mosquitto import Subscriber
from tools.harness.parkctl import parkctl
from tools.harness.procstat import cpu_seconds, rss_mb
from tools.harness.proxy import FaultProxy
from tools.harness.services import ServiceMissing, micropython_binary
from tools.soakreport import Fault, Figures, build_report

# device/spool.py's on-flash layout: 20-byte records "<IIIIHH" (seq first), pointer "<IIIII"
# (head, dropped, then the last acknowledged reading), segment files spool.d/<k>.
_REC = 20
_PTR = "<IIIII"
ALL_FAULTS = ("kill", "mosquitto", "postgres", "cut", "rotate", "disable", "reboot")
DOWN_S = {"kill": 30.0, "postgres": 30.0, "cut": 60.0}
# When each fault starts, as a fraction of the run (600 s: 60, 150, 210, 300, 420, 450, 480 s).
AT = {
    "kill": 0.10,
    "mosquitto": 0.25,
    "postgres": 0.35,
    "cut": 0.50,
    "rotate": 0.70,
    "disable": 0.75,
    "reboot": 0.80,
}
DISABLED = 5
REBOOTED = 10
SAMPLE_S = 1.0
QUIET_SLEEP = Path(__file__).parent / "unixport" / "quietsleep"
_TOKENS = "SELECT target, count(*) FROM audit_log WHERE action = 'token.issue' GROUP BY target"


def spool_state(board: Path) -> tuple[int, int, int]:
    """(head, dropped, next seq) of a board's spool, read from the host like spoolscan.py."""
    root = board / "spool.d"
    head = dropped = 0
    try:
        raw = (root / "ptr").read_bytes()  # absent until the first acknowledgement
        if len(raw) == struct.calcsize(_PTR):
            head, dropped = struct.unpack(_PTR, raw)[:2]
    except OSError:
        pass
    try:
        segs = sorted((int(n) for n in os.listdir(root) if n.isdigit()), reverse=True)
    except OSError:
        return head, dropped, head
    for k in segs:
        try:
            data = (root / str(k)).read_bytes()
        except OSError:
            continue
        if len(data) >= _REC:
            last = (len(data) // _REC - 1) * _REC
            return head, dropped, max(head, struct.unpack_from("<I", data, last)[0] + 1)
    return head, dropped, head


@dataclass
class Board:
    client_id: str
    secret: str
    agent: AgentProcess


@dataclass
class Sample:
    at: float
    backlog: int | None  # readings produced by enabled boards and not yet stored
    stored: int | None
    heard: int  # distinct readings the MQTT subscriber has seen
    states: dict[str, str] = field(default_factory=dict)


class Soak:
    """One soak run on a fresh `Cluster` in `root`."""

    def __init__(self, root: Path, boards: int, duration: float, faults: tuple[str, ...]):
        self.root = root
        self.n = boards
        self.duration = duration
        self.faults = faults
        self.cluster = Cluster(root / "cluster")
        self.engine = make_engine(self.cluster.pg.url)
        self.boards: list[Board] = []
        self.disabled: dict[str, float] = {}  # client_id -> wall-clock time of the disable
        self.records: list[Fault] = []
        self.samples: list[Sample] = []
        self.heard: set[tuple[str, int]] = set()
        self.cpu_done = 0.0  # CPU of instance processes that were killed
        self.cpu_seen: dict[int, float] = {}
        self.t0 = 0.0
        self._stop = threading.Event()
        self._lock = threading.Lock()

    # --- set-up -------------------------------------------------------------------------------

    def start(self) -> None:
        self.cluster.start()
        self.proxy = FaultProxy(self.cluster.lb.port)
        self.subscriber = Subscriber(
            self.cluster.broker, topic="parking/+/devices/+/readings", persistent=True
        )
        self.subscriber.wait_subscribed()
        self.subscriber.client.on_message = self._on_message
        micropython = micropython_binary()
        creds: list[tuple[str, str]] = []
        for lot in range(5):
            creds += register_devices(
                self.cluster.data_dir,
                self.n // 5 + (lot < self.n % 5),
                f"lot-{lot + 1}",
                self.cluster.pg.url,
            )
        boards_dir = self.root / "boards"
        # The Unix port's sleep_ms() polls; quietsleep/time.py sleeps as a board does.
        path = f"{QUIET_SLEEP}:{micropython_env(compiled=True)['MICROPYPATH']}"
        for client_id, secret in creds:
            config = board_config(
                client_id,
                secret,
                self.proxy.url,
                interval_s=10,
                http_timeout_s=10,  # the board's default
                backoff_base_s=2,
                backoff_cap_s=60,
                health_every_s=60,
            )
            agent = AgentProcess.on_new_board(
                micropython, boards_dir / client_id, config, env={"MICROPYPATH": path}
            )
            self.boards.append(Board(client_id, secret, agent))
        # Spread the boards' first readings over one interval, as a real fleet's are.
        self.t0 = time.monotonic()
        for i, board in enumerate(self.boards):
            time.sleep(max(0.0, self.t0 + i * 10.0 / len(self.boards) - time.monotonic()))
            board.agent.start()
        threading.Thread(target=self._monitor, daemon=True).start()

    def _on_message(self, _c: object, _u: object, message: Any) -> None:
        device = message.topic.split("/")[3]
        seqs = [r["seq"] for r in json.loads(message.payload)["readings"]]
        with self._lock:
            self.heard.update((device, s) for s in seqs)

    # --- monitoring ---------------------------------------------------------------------------

    def stored_by_board(self) -> dict[str, tuple[int, int, int]]:
        """device_id -> (rows, distinct seqs, highest seq + 1) in the database."""
        sql = "SELECT device_id, count(*), count(DISTINCT seq), max(seq) FROM readings GROUP BY 1"
        with self.engine.connect() as conn:
            rows = conn.execute(text(sql)).all()
        return {r[0]: (int(r[1]), int(r[2]), int(r[3]) + 1) for r in rows}

    def backlog(self) -> tuple[int | None, int | None]:
        try:
            stored = self.stored_by_board()
        except Exception:  # noqa: BLE001 - PostgreSQL stopped: no figure for this sample
            return None, None
        behind = 0
        for board in self.boards:
            if board.client_id not in self.disabled:
                produced = spool_state(board.agent.board)[2]
                behind += max(0, produced - stored.get(board.client_id, (0, 0, 0))[1])
        return behind, sum(v[1] for v in stored.values())

    def _monitor(self) -> None:
        while not self._stop.wait(SAMPLE_S):
            backlog, stored = self.backlog()
            with self._lock:
                heard = len(self.heard)
            try:
                states = self.cluster.lb.server_states()
            except OSError:
                states = {}
            self.samples.append(Sample(time.monotonic(), backlog, stored, heard, states))
            for service in self.cluster.services:
                if service.proc and service.proc.poll() is None:
                    self.cpu_seen[service.proc.pid] = cpu_seconds(service.proc.pid)

    def wait_healed(self, since: float, limit: float = 240) -> float | None:
        """Seconds after `since` until the backlog is back to its level before the fault."""
        before = [s.backlog for s in self.samples if s.backlog is not None and s.at < since]
        normal = sorted(before[-30:])[len(before[-30:]) // 2] if before else 0
        bound = normal + max(5, self.n // 50)
        end = since + limit
        while time.monotonic() < end:
            fresh = [s for s in self.samples if s.at > since and s.backlog is not None]
            for s in fresh:
                if s.backlog is not None and s.backlog <= bound:
                    return s.at - since
            time.sleep(SAMPLE_S)
        return None

    # --- faults -------------------------------------------------------------------------------

    def run_schedule(self) -> None:
        plan = sorted((AT[name] * self.duration, name) for name in self.faults)
        for at, name in plan:
            time.sleep(max(0.0, self.t0 + at - time.monotonic()))
            print(f"soak: t={time.monotonic() - self.t0:5.0f}s fault {name}", flush=True)
            try:
                getattr(self, f"fault_{name}")()
            except Exception as error:  # noqa: BLE001 - the run goes on; the report shows it
                now = time.monotonic()
                self._record(name, now, now, None, f"fault failed: {error!r}"[:200])
        time.sleep(max(0.0, self.t0 + self.duration - time.monotonic()))

    def _record(self, name: str, start: float, end: float, healed: float | None, note: str) -> None:
        self.records.append(Fault(name, start - self.t0, end - self.t0, healed, note))

    def fault_kill(self) -> None:
        service = self.cluster.services[0]
        assert service.proc is not None
        self.cpu_done += cpu_seconds(service.proc.pid)
        start = time.monotonic()
        service.stop(sig=9)
        time.sleep(DOWN_S["kill"])
        end = time.monotonic()
        service.start()
        up = self._wait_server_up("p1")
        self._record("kill -9 instance p1", start, end, up, "until HAProxy marks p1 UP again")

    def _wait_server_up(self, name: str, limit: float = 60) -> float | None:
        since = time.monotonic()
        while time.monotonic() - since < limit:
            if self.cluster.lb.server_states().get(name, "").startswith("UP"):
                return time.monotonic() - since
            time.sleep(0.2)
        return None

    def fault_mosquitto(self) -> None:
        start = time.monotonic()
        with self._lock:
            heard_before = len(self.heard)
        self.cluster.broker.stop()
        self.cluster.broker.start()
        end = time.monotonic()
        healed = None
        while time.monotonic() - end < 120:
            _, stored = self.backlog()
            with self._lock:
                heard = len(self.heard)
            if stored is not None and heard >= stored and heard > heard_before:
                healed = time.monotonic() - end
                break
            time.sleep(0.5)
        self._record("Mosquitto restart", start, end, healed, "until MQTT has every stored one")

    def fault_postgres(self) -> None:
        start = time.monotonic()
        self.pg_down = [start]
        self.cluster.pg.stop()
        time.sleep(DOWN_S["postgres"])
        self.cluster.pg.start()
        end = time.monotonic()
        up = self.cluster.wait_all_up(timeout=120)
        self.pg_down.append(end + up)
        healed = self.wait_healed(end)
        self._record("PostgreSQL stopped", start, end, healed, f"instances UP after {up:.1f} s")

    def fault_cut(self) -> None:
        start = time.monotonic()
        self.proxy.cut.set()
        time.sleep(DOWN_S["cut"])
        self.proxy.cut.clear()
        end = time.monotonic()
        self._record("boards' network cut", start, end, self.wait_healed(end), "backlog drained")

    def fault_rotate(self) -> None:
        start = time.monotonic()
        done = parkctl(
            "keys", "rotate", "--db", self.cluster.pg.url, "--data-dir",
            str(self.cluster.data_dir), "--json",
        )  # fmt: skip
        end = time.monotonic()
        if done.returncode:
            self._record("key rotation", start, end, None, f"parkctl failed: {done.stderr}")
            return
        kid = json.loads(done.stdout).get("kid", "")
        seen = None
        while time.monotonic() - end < 60 and kid:
            kids = [self._jwks_kids(s.url) for s in self.cluster.services]
            if all(kid in k for k in kids):
                seen = time.monotonic() - end
                break
            time.sleep(0.5)
        self._record("key rotation", start, end, seen, f"until every instance's JWKS has {kid}")

    @staticmethod
    def _jwks_kids(url: str) -> set[str]:
        try:
            keys = httpx.get(url + "/.well-known/jwks.json", timeout=5).json()["keys"]
        except (httpx.HTTPError, ValueError, KeyError):
            return set()
        return {k.get("kid", "") for k in keys}

    def fault_disable(self) -> None:
        """Disable five boards; measure when each instance refuses a token of theirs."""
        victims = self.boards[:DISABLED]
        probes = {b.client_id: self._probe_token(b) for b in victims}
        self.probe_tokens = len(victims)
        pending = [(s.url, token) for s in self.cluster.services for token in probes.values()]
        # A token an instance refuses already (e.g. one whose signing key it does not know yet)
        # measures nothing: such pairs are left out and counted in the note. Asked before the
        # disable: after it, every pair is refused at once and nothing would be measured.
        early = self._refusing(pending)
        pending = [p for p in pending if p not in early]
        start = time.monotonic()
        with session_factory(self.engine)() as session:  # disable() commits
            for board in victims:
                registry.disable(session, "soak", board.client_id)
        committed = time.monotonic()
        now = time.time()
        for board in victims:
            self.disabled[board.client_id] = now
        refused = self._wait_refused(pending, committed)
        self.refusal = refused
        note = "until all instances refuse"
        if early:
            ports = sorted({url.rsplit(":", 1)[1] for url, _t in early})
            note += f"; {len(early)} probes refused before the disable (ports {ports})"
        self._record("5 boards disabled", start, committed, max(refused, default=None), note)

    def _probe_token(self, board: Board) -> str:
        response = httpx.post(
            self.cluster.url + "/oauth/token",
            data={"grant_type": "client_credentials", "audience": "parkfleet-ingest"},
            auth=(board.client_id, board.secret),
            timeout=10,
        )
        response.raise_for_status()
        return str(response.json()["access_token"])

    @staticmethod
    def _wait_refused(
        pending: list[tuple[str, str]], since: float, limit: float = 60
    ) -> list[float]:
        """Poll every (instance URL, token) pair together; s from `since` until each got 401."""
        # An empty body: a valid token gets 422 (nothing stored), a refused one 401.
        took: list[float] = []
        with httpx.Client(timeout=5) as client:
            while pending and time.monotonic() - since < limit:
                left = []
                for url, token in pending:
                    headers = {
                        "Authorization": f"Bearer {token}",
                        "Content-Type": "application/json",
                    }
                    answer = client.post(url + "/v1/counts", content=b"{}", headers=headers)
                    if answer.status_code == 401:
                        took.append(time.monotonic() - since)
                    else:
                        left.append((url, token))
                pending = left
                time.sleep(0.02)
        return took + [float("inf")] * len(pending)

    @staticmethod
    def _refusing(pending: list[tuple[str, str]]) -> list[tuple[str, str]]:
        headers = {"Content-Type": "application/json"}
        with httpx.Client(timeout=5) as client:
            return [
                (url, token)
                for url, token in pending
                if client.post(
                    url + "/v1/counts",
                    content=b"{}",
                    headers={**headers, "Authorization": f"Bearer {token}"},
                ).status_code
                == 401
            ]

    def fault_reboot(self) -> None:
        """Power-cycle ten enabled boards (kill -9, start again): no new token may be needed."""
        with self.engine.connect() as conn:
            self.tokens_before = {str(k): int(v) for k, v in conn.execute(text(_TOKENS)).all()}
        start = time.monotonic()
        for board in self.boards[DISABLED : DISABLED + REBOOTED]:
            board.agent.kill()
            board.agent.start()
        self.rebooted = [b.client_id for b in self.boards[DISABLED : DISABLED + REBOOTED]]
        self._record("10 boards rebooted", start, time.monotonic(), None, "token count below")

    # --- end ----------------------------------------------------------------------------------

    def drain(self, limit: float = 300) -> float | None:
        """Wait until every enabled board's spool is empty and MQTT has every stored reading."""
        since = time.monotonic()
        while time.monotonic() - since < limit:
            backlog, stored = self.backlog()
            with self._lock:
                heard = len(self.heard)
            if backlog == 0 and stored is not None and heard >= stored:
                return time.monotonic() - since
            time.sleep(1)
        return None

    def _wait_heard(self, stored: dict[str, tuple[int, int, int]], limit: float = 60) -> None:
        wanted = {
            (c, seq) for c, (_rows, distinct, _top) in stored.items() for seq in range(distinct)
        }
        end = time.monotonic() + limit
        while time.monotonic() < end:
            with self._lock:
                if wanted <= self.heard:
                    return
            time.sleep(0.5)

    def figures(self, drained: float | None) -> Figures:
        cpu = self.cpu_done + sum(cpu_seconds(s.proc.pid) for s in self.cluster.services if s.proc)
        memory = [rss_mb(s.proc.pid) for s in self.cluster.services if s.proc]
        for board in self.boards:
            board.agent.kill()
        spools = {b.client_id: spool_state(b.agent.board) for b in self.boards}
        stored = self.stored_by_board()
        # The boards ran until the kill above: their last posts may still be on their way
        # through the outbox. Fan-out is asynchronous, so give it a bounded time to catch up.
        self._wait_heard(stored)
        with self.engine.connect() as conn:
            tokens: dict[str, int] = dict(conn.execute(text(_TOKENS)).all())
            late = conn.execute(
                text("SELECT device_id, max(received_at) FROM readings GROUP BY 1")
            ).all()
        with self._lock:
            heard = set(self.heard)
        return Figures(
            boards=self.n,
            duration=self.duration,
            faults=self.records,
            spools=spools,
            stored=stored,
            heard=heard,
            tokens={str(k): int(v) for k, v in tokens.items()},
            tokens_before_reboot=getattr(self, "tokens_before", {}),
            probe_tokens=getattr(self, "probe_tokens", 0),
            rebooted=getattr(self, "rebooted", []),
            disabled=self.disabled,
            last_received={str(d): float(t) for d, t in late},
            refusal=getattr(self, "refusal", []),
            exchanges=self.proxy.exchanges(),
            pg_down=getattr(self, "pg_down", []),
            cpu_s=cpu,
            memory_mb=memory,
            drained_s=drained,
            t0=self.t0,
        )

    def stop(self) -> None:
        self._stop.set()
        for board in self.boards:
            board.agent.kill()
        if hasattr(self, "subscriber"):
            self.subscriber.close()
        if hasattr(self, "proxy"):
            self.proxy.close()
        self.engine.dispose()
        self.cluster.stop()


def run(root: Path, boards: int, duration: float, faults: tuple[str, ...]) -> tuple[bool, str]:
    """One soak; (every check held, the report)."""
    soak = Soak(root, boards, duration, faults)
    try:
        soak.start()
        soak.run_schedule()
        print("soak: run over, boards draining their spools", flush=True)
        drained = soak.drain()
        return build_report(soak.figures(drained))
    finally:
        soak.stop()


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments, run the soak, print the report; 1 unless every check held."""
    parser = argparse.ArgumentParser(prog="tools.soak", description=__doc__.splitlines()[0])
    parser.add_argument("--boards", type=int, default=500)
    parser.add_argument("--duration", type=float, default=600, help="seconds of faults and load")
    parser.add_argument(
        "--faults", default=",".join(ALL_FAULTS), help=f"comma list of {', '.join(ALL_FAULTS)}"
    )
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args(argv)
    faults = tuple(f for f in args.faults.split(",") if f)
    unknown = set(faults) - set(ALL_FAULTS)
    if unknown:
        parser.error(f"unknown faults: {', '.join(sorted(unknown))}")
    root = Path(tempfile.mkdtemp(prefix="parkfleet-soak-"))
    try:
        ok, report = run(root, args.boards, args.duration, faults)
    except ServiceMissing as error:
        print(f"soak: {error}", file=sys.stderr)
        return 2
    finally:
        if not args.keep:
            import shutil

            shutil.rmtree(root, ignore_errors=True)
    print(report)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
