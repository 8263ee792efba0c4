"""`make rollout-soak`: a phased rollout to real agents counting through HAProxy.

Boards are the agent under the MicroPython Unix port at a 64 KB heap, installed with release
1.0.0 (the app_a/app_b layout `parkctl board install` makes), one reading every 10 s, reaching
HAProxy and three instances through the fault proxy (tools/harness/proxy.py), which logs every
exchange. Once every board has posted, release 1.1.0 is published and rolled out with
`parkctl rollout start --phases` (default 1,5%,25%,100%); a supervisor restarts a board whose
agent exits (a reset after an update, a crash), as a board reboots.

The report: for each phase, p50/p95 seconds from the phase's start to each of its boards'
confirmation; every board's end state (updated, rolled back, stuck, bricked: no post in the
last minute); readings lost (produced, never stored) or doubled (stored twice); the 429/503
answers the boards saw, downloads apart; and the failures the rollout attributes to the
release and to the service. Exit status 1 unless every board ends updated or rolled back,
nothing is lost or doubled, and no download was shed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text

from provisioning.common import bundle
from provisioning.service.auth.secrets import SecretHasher
from provisioning.service.registry import service as registry
from provisioning.store.db import make_engine, session_factory
from tools.cluster import Cluster
from tools.harness.agent import AgentProcess, board_config, make_board, micropython_env
from tools.harness.clients import register_devices
from tools.harness.parkctl import parkctl
from tools.harness.proxy import FaultProxy
from tools.harness.services import ServiceMissing, micropython_binary
from tools.soak import QUIET_SLEEP, spool_state

INTERVAL_S = 10.0


class RolloutSoak:
    """One run on a fresh `Cluster` in `root`."""

    def __init__(self, root: Path, boards: int, phases: str, wait: str, parallel: int) -> None:
        self.root = root
        self.n = boards
        self.phases, self.wait, self.parallel = phases, wait, parallel
        self.key = root / "release.key"
        bundle.keygen(self.key)
        env = {"PARK_RELEASE_KEYS": f"{self.key}.pub"}
        self.cluster = Cluster(root / "cluster", extra_env=env)
        self.engine = make_engine(self.cluster.pg.url)
        self.agents: list[tuple[str, AgentProcess]] = []
        self._stop = threading.Event()

    def start(self) -> None:
        self.cluster.start()
        self.proxy = FaultProxy(self.cluster.lb.port)
        creds: list[tuple[str, str]] = []
        for lot in range(5):
            count = self.n // 5 + (lot < self.n % 5)
            creds += register_devices(
                self.cluster.data_dir, count, f"lot-{lot + 1}", self.cluster.pg.url
            )
        with session_factory(self.engine)() as session:
            hasher = SecretHasher.from_data_dir(self.cluster.data_dir)
            op, secret = registry.create_operator(session, hasher, "soak", "rollout-soak")
        self.env = {
            "PARK_SERVER": self.cluster.url,
            "PARK_CLIENT_ID": op.client_id,
            "PARK_CLIENT_SECRET": secret,
            "PARK_CACHE_DIR": str(self.root / "cache"),
        }
        base = bundle.build("1.0.0", self.key, self.root / "release-1.0.0")
        micropython = micropython_binary()
        path = f"{QUIET_SLEEP}:{micropython_env(compiled=True)['MICROPYPATH']}"
        for client_id, secret in creds:
            config = board_config(
                client_id, secret, self.proxy.url, interval_s=INTERVAL_S, http_timeout_s=10,
                backoff_base_s=2, backoff_cap_s=60, health_every_s=60,
            )  # fmt: skip
            board = make_board(self.root / "boards" / client_id, config, cars=3, release=base)
            agent = AgentProcess(micropython, board, compiled=True, env={"MICROPYPATH": path})
            self.agents.append((client_id, agent))
        t0 = time.monotonic()
        for i, (_id, agent) in enumerate(self.agents):
            time.sleep(max(0.0, t0 + i * INTERVAL_S / self.n - time.monotonic()))
            agent.start()
        threading.Thread(target=self._supervise, daemon=True).start()

    def _supervise(self) -> None:
        # One thread for every board: an agent that exited (a reset) boots again.
        while not self._stop.wait(0.5):
            for _id, agent in self.agents:
                if agent.proc is not None and agent.proc.poll() is not None:
                    agent.start()

    def sql(self, query: str, **params: Any) -> list[Any]:
        with self.engine.connect() as conn:
            return list(conn.execute(text(query), params).all())

    def wait_versions(self, version: str, limit: float = 300) -> None:
        end = time.monotonic() + limit
        while time.monotonic() < end:
            rows = self.sql("SELECT count(*) FROM device_agent WHERE version = :v", v=version)
            if rows[0][0] >= self.n:
                return
            time.sleep(2)
        raise RuntimeError(f"only {rows[0][0]} of {self.n} boards report {version}")

    def api(self, method: str, path: str) -> dict[str, Any]:
        """An admin API call with one operator token, fetched again once it is refused."""
        with httpx.Client(base_url=self.cluster.url, timeout=30) as http:
            for _ in range(2):
                if getattr(self, "_token", None) is None:
                    got = http.post(
                        "/oauth/token",
                        data={"grant_type": "client_credentials", "audience": "parkfleet-admin"},
                        auth=(self.env["PARK_CLIENT_ID"], self.env["PARK_CLIENT_SECRET"]),
                    )
                    got.raise_for_status()
                    self._token = got.json()["access_token"]
                auth = {"Authorization": f"Bearer {self._token}"}
                answer = http.request(method, path, headers=auth)
                if answer.status_code != 401:
                    answer.raise_for_status()
                    return dict(answer.json())
                self._token = None
        raise RuntimeError(f"{method} {path}: refused twice")

    def roll(self, limit: float) -> tuple[dict[str, Any], float]:
        """Publish 1.1.0 and roll it out; the rollout's last view and its wall time."""
        import os

        env = {**os.environ, **self.env}
        out = self.root / "release-1.1.0"
        bundle.build("1.1.0", self.key, out)
        done = parkctl("release", "publish", str(out), env=env)
        assert done.returncode == 0, done.stderr
        start = self.rollout_at = time.monotonic()
        done = parkctl(
            "rollout", "start", "1.1.0", "--devices", ",".join(i for i, _a in self.agents),
            "--phases", self.phases, "--phase-wait", self.wait, "--parallel", str(self.parallel),
            "--silence", "120s", "--json", env=env, timeout=300,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        rid = json.loads(done.stdout)["id"]
        view: dict[str, Any] = {}
        while time.monotonic() - start < limit:
            time.sleep(5)
            view = self.api("GET", f"/admin/rollouts/{rid}")
            flying = sum(1 for b in view["boards"] if b["state"] in ("pending", "downloading"))
            at = time.monotonic() - start
            phase = f"{view['phase']}/{len(view['phases'])}"
            print(f"rollout-soak: t={at:5.0f}s {view['state']} phase {phase}, {flying} updating",
                  flush=True)  # fmt: skip
            if view["state"] not in ("canary", "rolling"):
                break
        return view, time.monotonic() - start

    def drain(self, limit: float = 120) -> None:
        end = time.monotonic() + limit
        while time.monotonic() < end:
            stored = {d: n for d, n in self.sql(
                "SELECT device_id, count(DISTINCT seq) FROM readings GROUP BY 1")}  # fmt: skip
            behind = sum(max(0, spool_state(a.board)[2] - stored.get(i, 0)) for i, a in self.agents)
            if behind == 0:
                return
            time.sleep(2)

    def report(self, view: dict[str, Any], took: float) -> tuple[bool, str]:
        rid = str(view["id"])
        starts = [a for (a,) in self.sql(
            "SELECT at FROM audit_log WHERE target = :r AND action IN ('rollout.start', "
            "'rollout.promote') ORDER BY id", r=rid)]  # fmt: skip
        confirmed: dict[str, float] = {}
        for target, at, detail in self.sql(
            "SELECT target, at, detail FROM audit_log WHERE action = 'agent.confirmed' ORDER BY id"
        ):
            info = detail if isinstance(detail, dict) else json.loads(detail or "{}")
            if info.get("version") == "1.1.0":
                confirmed.setdefault(target, at)
        lines = [
            f"Phased rollout of 1.1.0 to {self.n} boards: {view['state']} in {took:.0f} s"
            f" (phases {view['phases']}, wait {self.wait}, parallel {self.parallel})"
        ]
        for k, at in enumerate(starts):
            times = sorted(confirmed[b["device_id"]] - at for b in view["boards"]
                           if b["phase"] == k + 1 and b["device_id"] in confirmed)  # fmt: skip
            if times:
                p95 = times[min(len(times) - 1, int(0.95 * len(times)))]
                lines.append(f"  phase {k + 1}: {len(times)} boards confirmed, start to confirmed"
                             f" p50 {statistics.median(times):.1f} s, p95 {p95:.1f} s")  # fmt: skip
        self._stop.set()
        last = dict(self.sql("SELECT device_id, last_seen_at FROM device_state"))
        now = time.time()
        ends = {"updated": 0, "rolled back": 0, "stuck": 0, "bricked": 0}
        for b in view["boards"]:
            if now - (last.get(b["device_id"]) or 0) > 60:
                ends["bricked"] += 1
            elif b["version"] == "1.1.0" and b["state"] == "confirmed":
                ends["updated"] += 1
            elif b["version"] == "1.0.0" and b["state"] == "rolled_back":
                ends["rolled back"] += 1
            else:
                ends["stuck"] += 1
        self.drain()
        for _id, agent in self.agents:
            agent.kill()
        counted = "SELECT device_id, count(*), count(DISTINCT seq) FROM readings GROUP BY 1"
        rows = {d: (n, k) for d, n, k in self.sql(counted)}
        produced = {i: spool_state(a.board)[2] for i, a in self.agents}
        lost = sum(max(0, produced[i] - rows.get(i, (0, 0))[1]) for i in produced)
        doubled = sum(n - k for n, k in rows.values())
        shed = [e for e in self.proxy.exchanges() if e.status in (429, 503)]
        shed_downloads = [e for e in shed if e.path.startswith("/v1/releases/")]
        # Which requests, and whether before the rollout (the fleet's boot) or during it.
        kinds: dict[str, int] = {}
        for e in shed:
            when = "boot" if e.at < self.rollout_at else "rollout"
            key = f"{e.status} {e.method} {'/'.join(e.path.split('/')[:3])} ({when})"
            kinds[key] = kinds.get(key, 0) + 1
        lines += [
            "  boards: " + ", ".join(f"{v} {k}" for k, v in ends.items()),
            f"  readings: {sum(produced.values())} produced, {lost} lost, {doubled} doubled",
            f"  429/503 seen by boards: {len(shed)} ({len(shed_downloads)} on downloads)"
            + "".join(f"\n    {n} x {k}" for k, n in sorted(kinds.items())),
            f"  failures: {view['failures']['release']} of the release, "
            f"{view['failures']['service']} of the service (shed downloads)",
        ]
        ok = (
            view["state"] == "done"
            and ends["stuck"] == ends["bricked"] == 0
            and lost == doubled == 0
            and not shed_downloads
        )
        return ok, "\n".join(lines)

    def stop(self) -> None:
        self._stop.set()
        for _id, agent in self.agents:
            agent.kill()
        if hasattr(self, "proxy"):
            self.proxy.close()
        self.engine.dispose()
        self.cluster.stop()


def main(argv: list[str] | None = None) -> int:
    """Run one phased rollout soak and print its report; 1 unless every check held."""
    parser = argparse.ArgumentParser(prog="tools.rolloutsoak", description=__doc__.splitlines()[0])
    parser.add_argument("--boards", type=int, default=500)
    parser.add_argument("--phases", default="1,5%,25%,100%")
    parser.add_argument("--phase-wait", default="30s")
    parser.add_argument("--parallel", type=int, default=25)
    parser.add_argument("--limit", type=float, default=1800, help="seconds for the rollout")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="parkfleet-rollout-soak-"))
    soak = RolloutSoak(root, args.boards, args.phases, args.phase_wait, args.parallel)
    ok, report = False, ""
    try:
        soak.start()
        soak.wait_versions("1.0.0")
        ok, report = soak.report(*soak.roll(args.limit))
    except ServiceMissing as error:
        report = f"rollout-soak: {error}"
    finally:
        soak.stop()
        if not args.keep:
            import shutil

            shutil.rmtree(root, ignore_errors=True)
    print(report, file=sys.stdout if report.startswith("Phased") else sys.stderr)
    return 0 if ok else (1 if report.startswith("Phased") else 2)


if __name__ == "__main__":
    sys.exit(main())
