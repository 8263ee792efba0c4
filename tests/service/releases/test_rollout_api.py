"""Phased rollouts through the admin API, with boards that post as the agent does (its agent
report, the update offered in the answer, the manifest download): the phase groups, the health
gate between phases, download pacing, shed downloads, and abort with rollback.

The agent itself runs these rollouts under the MicroPython Unix port in
tests/device/test_rollout_phases.py; here many quick cases run against the real service stack
in-process (SQLite and PostgreSQL)."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from provisioning.common import bundle
from provisioning.common.scopes import ADMIN_AUDIENCE, DEVICES_ADMIN
from provisioning.service.app import create_app
from tests.service.auth.conftest import Auth, make_settings


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bundles")
    key = root / "release.key"
    bundle.keygen(key)
    made = {"key": key}
    for version, rollback in (("1.0.0", True), ("2.0.0", False), ("2.1.0", False)):
        made[version] = bundle.build(version, key, root / version, rollback)
    return made


class Fleet:
    """The service and boards that post as the agent does."""

    def __init__(self, api: Auth, bundles: dict[str, Path]) -> None:
        self.api = api
        op, secret = api.operator()
        token = api.token(op, secret, audience=ADMIN_AUDIENCE, scope=DEVICES_ADMIN)
        self.admin = {"Authorization": f"Bearer {token}"}
        self.bundles = bundles
        self.boards: dict[str, dict[str, Any]] = {}

    def publish(self, version: str) -> None:
        d = self.bundles[version]
        files = {
            f"{sub}/{p.name}": base64.b64encode(p.read_bytes()).decode()
            for sub in ("app", "boot")
            for p in sorted((d / sub).glob("*"))
        }
        body = {
            "manifest": base64.b64encode((d / bundle.MANIFEST).read_bytes()).decode(),
            "signature": base64.b64encode((d / bundle.SIGNATURE).read_bytes()).decode(),
            "files": files,
        }
        done = self.api.http.post("/admin/releases", json=body, headers=self.admin)
        assert done.status_code == 201, done.text

    def board(self) -> str:
        dev, secret = self.api.device()
        token = self.api.token(dev, secret)
        self.boards[dev] = {
            "token": token,
            "version": "1.0.0",
            "report": None,
            "seq": 0,
            "refused": set(),
        }
        self.post(dev)
        return dev

    def post(self, dev: str, crash: bool = False, refuse: str | None = None) -> None:
        """One upload; an update offered in the answer is downloaded and installed at once
        (reported `installed`, then `confirmed` with the next upload), or refused."""
        b = self.boards[dev]
        b["seq"] += 1
        body: dict[str, Any] = {
            "readings": [{"seq": b["seq"], "cars": 1}],
            "agent": {"version": b["version"], **(b["report"] or {})},
            "health": {"uptime_s": b["seq"]},
        }
        if crash:
            body["crash"] = {"version": b["version"], "count": 1, "cause": "exception",
                             "traceback": "Traceback...\nValueError: fault"}  # fmt: skip
        auth = {"Authorization": f"Bearer {b['token']}"}
        answer = self.api.http.post("/v1/counts", json=body, headers=auth)
        assert answer.status_code == 200, answer.text
        b["report"] = {"update": "confirmed"} if b["report"] == {"update": "installed"} else None
        offer = answer.json().get("update")
        # A board does not try a version it refused again (the agent keeps it aside).
        if offer and offer["version"] not in b["refused"]:
            got = self.api.http.get(f"/v1/releases/{offer['version']}/manifest.json", headers=auth)
            assert got.status_code == 200
            if refuse:
                b["report"] = {"update": "refused", "reason": refuse, "target": offer["version"]}
                b["refused"].add(offer["version"])
            else:
                b["version"], b["report"] = offer["version"], {"update": "installed"}

    def rollout(self, rollout_id: int) -> dict[str, Any]:
        got = self.api.http.get(f"/admin/rollouts/{rollout_id}", headers=self.admin)
        assert got.status_code == 200, got.text
        return dict(got.json())

    def run(
        self, rollout_id: int, until: Callable[[dict[str, Any]], bool], timeout: float = 60,
        crashing: frozenset[str] = frozenset(), refusing: frozenset[str] = frozenset(),
        dead: frozenset[str] = frozenset(),
    ) -> dict[str, Any]:  # fmt: skip
        """Every board (but the `dead`) posts, again and again, until the rollout's view
        passes `until`."""
        deadline = time.monotonic() + timeout
        while True:
            for dev, b in self.boards.items():
                if dev in dead:
                    continue
                bad = dev in crashing and b["version"] == "2.0.0"
                self.post(dev, crash=bad, refuse="failed 3 times: 503" if dev in refusing else None)
            view = self.rollout(rollout_id)
            if until(view):
                return view
            assert time.monotonic() < deadline, view
            time.sleep(0.1)


@pytest.fixture
def fleet(tmp_path: Path, db_url: str, bundles: dict[str, Path]) -> Iterator[Fleet]:
    settings = make_settings(tmp_path / "data", db_url, release_keys=f"{bundles['key']}.pub")
    with TestClient(create_app(settings)) as http:
        yield Fleet(Auth(http), bundles)


def start(fleet: Fleet, version: str, **extra: Any) -> dict[str, Any]:
    body = {"version": version, "devices": list(fleet.boards), "phases": [1, "50%", "100%"],
            "phase_wait_s": 1, "silence_s": 30, "max_crash_rate": 0.1, "min_online": 0.5,
            **extra}  # fmt: skip
    done = fleet.api.http.post("/admin/rollouts", json=body, headers=fleet.admin)
    assert done.status_code == 201, done.text
    return dict(done.json())


def test_a_crashing_canary_pauses_before_phase_2_and_rolls_back(fleet: Fleet) -> None:
    for _ in range(6):
        fleet.board()
    fleet.publish("2.0.0")
    r = start(fleet, "2.0.0")
    assert r["phases"] == [1, 3, 6] and r["state"] == "canary"
    canary = r["boards"][0]["device_id"]
    assert [b["phase"] for b in r["boards"]] == [1, 2, 2, 3, 3, 3]
    # The same groups whatever order the boards are named in.
    again = start(fleet, "2.0.0", devices=list(reversed(fleet.boards)))
    assert [b["device_id"] for b in again["boards"]] == [b["device_id"] for b in r["boards"]]
    fleet.api.http.post(f"/admin/rollouts/{again['id']}/abort", headers=fleet.admin)
    view = fleet.run(r["id"], lambda v: v["state"] == "paused", crashing=frozenset({canary}))
    assert view["reason"].startswith("phase 1: crash rate 1.00 (1 of 1 boards)"), view
    assert view["health"]["phase"]["crashed"] == 1 and view["health"]["old"]["crashed"] == 0
    assert all(b["target"] is None for b in view["boards"][1:]), view  # never offered
    # Back to what it ran, with the signed rollback release; refused until it is published.
    refused = fleet.api.http.post(f"/admin/rollouts/{r['id']}/abort?rollback=true",
                                  headers=fleet.admin)  # fmt: skip
    assert refused.status_code == 409 and "no rollback release 1.0.0" in refused.text
    fleet.publish("1.0.0")
    done = fleet.api.http.post(f"/admin/rollouts/{r['id']}/abort?rollback=true",
                               headers=fleet.admin)  # fmt: skip
    assert done.status_code == 200, done.text
    assert done.json()["state"] == "aborted" and "1 boards sent back" in done.json()["reason"]
    for _ in range(4):
        for dev in fleet.boards:
            fleet.post(dev)
    assert fleet.boards[canary]["version"] == "1.0.0"
    back = fleet.rollout(r["id"])["boards"][0]
    assert back["version"] == "1.0.0" and back["state"] == "confirmed", back
    assert all(b["version"] == "1.0.0" for b in fleet.boards.values())


def test_a_healthy_release_goes_through_every_phase_paced(
    fleet: Fleet, capsys: pytest.CaptureFixture[str]
) -> None:
    for _ in range(6):
        fleet.board()
    fleet.publish("2.1.0")
    r = start(fleet, "2.1.0", parallel=1)
    most = [0]

    def watch(view: dict[str, Any]) -> bool:
        flying = [b for b in view["boards"] if b["state"] in ("pending", "downloading")]
        most[0] = max(most[0], len(flying))
        return bool(view["state"] == "done")

    view = fleet.run(r["id"], watch)
    assert most[0] == 1  # one download at a time
    from provisioning.parkctl.release import commands

    commands._show_rollout(view, as_json=False)  # what `parkctl rollout status` prints
    printed = capsys.readouterr().out
    assert f"Rollout {r['id']} of 2.1.0: done" in printed
    assert "phase 3 of 3 (boards 1/3/6)" in printed and "0 of the release" in printed
    assert all(b["version"] == "2.1.0" and b["state"] == "confirmed" for b in view["boards"])
    with fleet.api.ctx.sessions() as db:
        promoted = db.execute(
            text("SELECT count(*) FROM audit_log WHERE action = 'rollout.promote' AND target = :t"),
            {"t": str(r["id"])},
        ).scalar()
    assert promoted == 2


def test_shed_downloads_never_count_against_the_release(fleet: Fleet) -> None:
    for _ in range(4):
        fleet.board()
    fleet.publish("2.1.0")
    r = start(fleet, "2.1.0", phases=["50%", "100%"])
    shed = frozenset({r["boards"][0]["device_id"]})
    view = fleet.run(r["id"], lambda v: v["state"] in ("done", "paused"), refusing=shed)
    assert view["state"] == "done", view
    assert view["failures"] == {"release": 0, "service": 1}, view


def test_a_board_dead_before_its_phase_does_not_stop_the_rollout(fleet: Fleet) -> None:
    for _ in range(6):
        fleet.board()
    fleet.publish("2.1.0")
    first = start(fleet, "2.1.0", silence_s=2)
    fleet.api.http.post(f"/admin/rollouts/{first['id']}/abort", headers=fleet.admin)
    # A phase-2 board that died before the rollout (power, a broken sensor cable): its silence
    # is not the release's doing, and the healthy rest goes on to the last phase.
    time.sleep(1)
    r = start(fleet, "2.1.0", silence_s=2)
    dead = frozenset({r["boards"][1]["device_id"]})
    view = fleet.run(r["id"], lambda v: v["state"] == "paused" or v["phase"] == 3, dead=dead)
    assert view["state"] == "rolling" and view["phase"] == 3, view
    # A dead canary gives nothing to judge the release by: the rollout stops there.
    fleet.api.http.post(f"/admin/rollouts/{r['id']}/abort", headers=fleet.admin)
    fleet.publish("2.0.0")
    r = start(fleet, "2.0.0", silence_s=2)
    dead = frozenset({r["boards"][0]["device_id"]})
    view = fleet.run(r["id"], lambda v: v["state"] != "canary", dead=dead)
    assert view["state"] == "paused" and "nothing to judge by" in view["reason"], view
