"""Phased rollouts end to end: six real agents under the MicroPython Unix port on 1.0.0, the
real service, releases built with `parkctl release build --source` and rolled out with
`parkctl rollout start --phases`.

A release with a deliberate fault (every third upload raises) is confirmed by its canary (one
upload is enough for that) and then crashes: the canary's crash reports reach the service with
their traceback, the rollout pauses itself before phase 2, and `parkctl rollout abort
--rollback` returns the canary to 1.0.0 with a signed rollback release. A healthy release then
goes through every phase to done. Every reading is stored once.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from provisioning.common import bundle
from provisioning.parkctl.release.mpy import DEVICE_DIR
from tests.device.harness import assert_contiguous, wait_until
from tests.service.ui.test_session import _sign_in
from tools.harness.agent import Backend, RebootingBoard, board_config
from tools.harness.parkctl import parkctl

pytestmark = pytest.mark.micropython
HEAP = "64K"
BOARDS = 6
# At the end of an upload that went through, after its answer was taken in (the update
# confirmed, a crash report cleared): one upload in three raises.
FAULT = ("                self.uploaded = True\n",
         "                self.uploaded = True\n"
         "            if self._last[0] % 3 == 2:\n"
         "                raise ValueError('deliberate fault: every third upload')\n")  # fmt: skip


@pytest.fixture(scope="module")
def keyfile(tmp_path_factory: pytest.TempPathFactory) -> Path:
    key = tmp_path_factory.mktemp("keys") / "release.key"
    bundle.keygen(key)
    return key


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory, keyfile: Path) -> Iterator[Backend]:
    b = Backend(tmp_path_factory.mktemp("svc"), extra_args=["--release-key", f"{keyfile}.pub"])
    yield b.start()
    b.stop()


@pytest.fixture(scope="module")
def env(backend: Backend, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    client_id, secret = backend.create_operator()
    return {
        **os.environ,
        "COLUMNS": "200",
        "PARK_SERVER": backend.url,
        "PARK_CLIENT_ID": client_id,
        "PARK_CLIENT_SECRET": secret,
        "PARK_CACHE_DIR": str(tmp_path_factory.mktemp("cache")),
    }


def ok(*args: str, env: dict[str, str]) -> str:
    done = parkctl(*args, env=env)
    assert done.returncode == 0, done.stderr
    return done.stdout


def release(env: dict[str, str], key: Path, root: Path, version: str, *extra: str) -> None:
    out = root / f"release-{version}"
    ok("release", "build", "--version", version, "--key", str(key), "--out", str(out), *extra,
       env=env)  # fmt: skip
    ok("release", "publish", str(out), env=env)


def status(env: dict[str, str], rollout_id: int) -> dict[str, Any]:
    return dict(json.loads(ok("rollout", "status", str(rollout_id), "--json", env=env)))


def agent_row(backend: Backend, device_id: str) -> tuple[Any, ...]:
    rows = backend.query("SELECT version, state FROM device_agent WHERE device_id = ?", device_id)
    return tuple(rows[0]) if rows else (None, None)


def test_a_crashing_release_pauses_and_rolls_back_a_healthy_one_goes_everywhere(
    micropython: str, backend: Backend, env: dict[str, str], keyfile: Path, tmp_path: Path
) -> None:
    root = tmp_path / "releases"
    root.mkdir()
    base = root / "base-1.0.0"
    bundle.build("1.0.0", keyfile, base)
    boards: list[tuple[RebootingBoard, str]] = []
    canary = None
    try:
        for i in range(BOARDS):
            dev, secret = backend.create_device()
            config = board_config(dev, secret, backend.url, trial_limit_s=6)
            board = RebootingBoard(micropython, tmp_path / f"b{i}", config, base, HEAP)
            boards.append((board.start(), dev))
        ids = [dev for _, dev in boards]
        for dev in ids:
            wait_until(lambda d=dev: len(backend.seqs(d)) >= 2, 60, f"{dev}: no readings")
            wait_until(lambda d=dev: agent_row(backend, d)[0] == "1.0.0", 30, "no version")

        # A copy of the agent with a deliberate fault, built with --source.
        faulty = tmp_path / "faulty-agent"
        shutil.copytree(DEVICE_DIR, faulty, ignore=shutil.ignore_patterns("__pycache__"))
        uplink = (faulty / "uplink.py").read_text()
        assert uplink.count(FAULT[0]) == 1
        (faulty / "uplink.py").write_text(uplink.replace(*FAULT))
        release(env, keyfile, root, "1.1.0", "--source", str(faulty))
        started = json.loads(ok(
            "rollout", "start", "1.1.0", "--devices", ",".join(ids), "--phases", "1,50%,100%",
            # The agent reboots 10 s after a crash and reports it with its next upload: the
            # wait covers that.
            "--phase-wait", "25s", "--max-crash-rate", "0.1", "--min-online", "0.5",
            "--silence", "30s", "--json", env=env,
        ))  # fmt: skip
        assert started["phases"] == [1, 3, BOARDS] and started["state"] == "canary"
        rid = started["id"]
        canary = started["boards"][0]["device_id"]
        wait_until(lambda: status(env, rid)["state"] == "paused", 120, "never paused")
        paused = status(env, rid)
        assert paused["reason"].startswith("phase 1: crash rate 1.00"), paused
        assert paused["phase"] == 1
        assert all(b["target"] is None for b in paused["boards"][1:]), paused  # never offered
        shown = json.loads(ok("device", "show", canary, "--json", env=env))
        crash = shown["last_crash"]
        assert crash["version"] == "1.1.0" and crash["cause"] == "exception", crash
        assert "deliberate fault: every third upload" in crash["traceback"], crash
        assert "Traceback" in crash["traceback"]
        text = ok("device", "show", canary, env=env)
        assert "deliberate fault" in text and "last crash" in text
        # The dashboard shows the pause with its reason, and the canary's crash.
        with httpx.Client(base_url=backend.url, timeout=30) as http:
            who = (env["PARK_CLIENT_ID"], env["PARK_CLIENT_SECRET"])
            assert _sign_in(http, who).status_code == 303
            page = http.get("/ui/releases").text
            assert "paused" in page and "phase 1: crash rate 1.00" in page, page
            board_page = http.get(f"/ui/boards/{canary}").text
            assert "ValueError: deliberate fault: every third upload" in board_page

        # Back to 1.0.0: a signed rollback release of it, then abort --rollback.
        release(env, keyfile, root, "1.0.0", "--rollback")
        aborted = json.loads(ok("rollout", "abort", str(rid), "--rollback", "--json", env=env))
        assert aborted["state"] == "aborted" and "1 boards sent back" in aborted["reason"]
        wait_until(lambda: agent_row(backend, canary) == ("1.0.0", "confirmed"), 90,
                   "the canary never came back to 1.0.0")  # fmt: skip
        assert all(agent_row(backend, d)[0] == "1.0.0" for d in ids)

        # A healthy release through every phase.
        release(env, keyfile, root, "1.2.0")
        healthy = json.loads(ok(
            "rollout", "start", "1.2.0", "--devices", ",".join(ids), "--phases", "1,50%,100%",
            "--phase-wait", "2s", "--max-crash-rate", "0.1", "--min-online", "0.5",
            "--silence", "20s", "--json", env=env,
        ))  # fmt: skip
        wait_until(lambda: status(env, healthy["id"])["state"] == "done", 180, "never done")
        for dev in ids:
            assert agent_row(backend, dev) == ("1.2.0", "confirmed")
        promoted = backend.query(
            "SELECT count(*) FROM audit_log WHERE action = 'rollout.promote' AND target = ?",
            str(healthy["id"]),
        )[0][0]
        assert promoted == 2
    finally:
        for board, dev in boards:
            if dev == canary:
                # Its console has the deliberate fault's tracebacks, and only those.
                with contextlib.suppress(AssertionError):
                    board.stop()
            else:
                board.stop()  # fails on any warning or traceback on the console
    console = {dev: board.agent.console() for board, dev in boards}.get(canary or "", "")
    assert console.count("Traceback") == console.count("ValueError: deliberate fault"), console
    for _board, dev in boards:
        assert_contiguous(backend.seqs(dev))
