"""Over-the-air agent updates: the real agent under the MicroPython Unix port, the real
service, releases built, signed and published with `parkctl release`.

A board here is a directory run by a supervisor that starts `main.py` again whenever it exits,
as a board reboots after `machine.reset()`, a crash or a power cut (`kill -9`). Every delivery
assertion reads the service's store: readings contiguous from seq 0, each stored once.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from provisioning.common import bundle
from provisioning.parkctl.release.mpy import DEVICE_DIR
from tests.device.harness import assert_contiguous, wait_until
from tools.harness.agent import Backend, RebootingBoard, board_config
from tools.harness.parkctl import parkctl
from tools.harness.proxy import Fault, FaultProxy

pytestmark = pytest.mark.micropython
# The product's bound: an update installs at boot, before the agent's parts are built (ota.py)
HEAP = "64K"


class Keys:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.key = root / "release.key"
        self.other = root / "other.key"
        bundle.keygen(self.key)
        bundle.keygen(self.other)


class Releases:
    """Signed bundles built once per module, from device/ or a broken copy of it."""

    def __init__(self, root: Path, keys: Keys) -> None:
        self.root = root
        self.keys = keys

    def build(self, version: str, key: Path | None = None, rollback: bool = False,
              device_dir: Path | None = None) -> Path:  # fmt: skip
        out = self.root / f"{version}-{(key or self.keys.key).stem}"
        if not out.exists():
            bundle.build(version, key or self.keys.key, out, rollback, device_dir)
        return out

    def broken(self, version: str, module: str, old: str, new: str) -> Path:
        """A release whose `module` has `old` replaced by `new` (a bug that ships)."""
        src = self.root / f"src-{version}"
        shutil.copytree(DEVICE_DIR, src, ignore=shutil.ignore_patterns("__pycache__"))
        text = (src / module).read_text()
        assert old in text
        (src / module).write_text(text.replace(old, new, 1))
        return self.build(version, device_dir=src)


@pytest.fixture(scope="module")
def releases(tmp_path_factory: pytest.TempPathFactory) -> Releases:
    root = tmp_path_factory.mktemp("releases")
    return Releases(root, Keys(root))


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory, releases: Releases) -> Iterator[Backend]:
    # Both keys are trusted by the service; the boards trust only the first: a bundle the
    # service accepts can still be refused by a board (a compromised service, a wrong key).
    keys = releases.keys
    args = ["--release-key", f"{keys.key}.pub", "--release-key", f"{keys.other}.pub"]
    b = Backend(tmp_path_factory.mktemp("svc"), extra_args=args).start()
    yield b
    b.stop()


@pytest.fixture(scope="module")
def operator_env(backend: Backend, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    client_id, secret = backend.create_operator()
    return {
        **os.environ,
        "PARK_SERVER": backend.url,
        "PARK_CLIENT_ID": client_id,
        "PARK_CLIENT_SECRET": secret,
        "PARK_CACHE_DIR": str(tmp_path_factory.mktemp("cache")),
    }


def publish(env: dict[str, str], release: Path) -> None:
    done = parkctl("release", "publish", str(release), env=env)
    assert done.returncode == 0 or "published already" in done.stderr, done.stderr


def target(env: dict[str, str], version: str, devices: list[str]) -> None:
    from provisioning.parkctl.api.client import from_environment

    old = dict(os.environ)
    os.environ.update(env)
    try:
        with from_environment() as client:
            client.call_json("POST", f"/admin/releases/{version}/targets", {"devices": devices})
    finally:
        os.environ.clear()
        os.environ.update(old)


def agent_row(backend: Backend, device_id: str) -> tuple[Any, ...] | None:
    rows = backend.query(
        "SELECT version, target, state, reason FROM device_agent WHERE device_id = ?", device_id
    )
    return rows[0] if rows else None


def new_board(micropython: str, backend: Backend, tmp_path: Path, releases: Releases,
              name: str = "board", **extra: Any) -> tuple[RebootingBoard, str]:  # fmt: skip
    device_id, secret = backend.create_device()
    config = board_config(device_id, secret, backend.url, trial_limit_s=6, **extra)
    board = RebootingBoard(micropython, tmp_path / name, config, releases.build("1.0.0"), HEAP)
    return board.start(), device_id


def wait_state(
    backend: Backend, device_id: str, state: str, timeout: float = 60
) -> tuple[Any, ...]:
    wait_until(
        lambda: (agent_row(backend, device_id) or (None,) * 3)[2] == state,
        timeout,
        f"{device_id} never reached {state}: {agent_row(backend, device_id)}",
    )
    row = agent_row(backend, device_id)
    assert row is not None
    return row


def test_update_is_confirmed_and_loses_nothing(
    micropython: str, backend: Backend, operator_env: dict[str, str], releases: Releases,
    tmp_path: Path,
) -> None:  # fmt: skip
    board, dev = new_board(micropython, backend, tmp_path, releases)
    try:
        wait_until(lambda: len(backend.seqs(dev)) >= 3, 30, "no readings before the update")
        assert agent_row(backend, dev)[0] == "1.0.0"  # type: ignore[index]
        publish(operator_env, releases.build("1.1.0"))
        target(operator_env, "1.1.0", [dev])
        row = wait_state(backend, dev, "confirmed")
        assert row[0] == "1.1.0"
        assert board.app() == ["app_b", "1.1.0", "app_a", "1.0.0", "-", "-"]
        seen = len(backend.seqs(dev))
        wait_until(lambda: len(backend.seqs(dev)) > seen + 3, 30, "no readings after the update")
    finally:
        board.stop()
    assert_contiguous(backend.seqs(dev))
    console = board.agent.console()
    assert "update 1.1.0 installed in app_b, rebooting" in console
    assert "Traceback" not in console, console
    actions = [r[0] for r in backend.query(
        "SELECT action FROM audit_log WHERE target = ? AND action LIKE 'agent.%' ORDER BY id", dev
    )]  # fmt: skip
    assert actions[:2] == ["agent.pending", "agent.downloading"], actions
    assert "agent.installed" in actions and actions[-1] == "agent.confirmed", actions


@pytest.mark.parametrize("case", ["file", "manifest", "other_key", "downgrade", "missing"])
def test_board_refuses_and_keeps_its_version(
    case: str, micropython: str, backend: Backend, operator_env: dict[str, str],
    releases: Releases, tmp_path: Path,
) -> None:  # fmt: skip
    version = {
        "file": "1.2.1",
        "manifest": "1.2.2",
        "other_key": "1.2.3",
        "downgrade": "0.9.0",
        "missing": "1.2.4",
    }
    v = version[case]
    release = releases.build(v, releases.keys.other if case == "other_key" else None)
    publish(operator_env, release)
    if case == "file":
        # A compromised service (or a corrupted store) serves a module that is not the one
        # signed: the board's SHA-256 check catches it.
        backend.query(
            "UPDATE release_files SET data = CAST(data || x'00' AS BLOB) "
            "WHERE version = ? AND path = ?",
            v,
            "uplink.mpy",
        )
    if case == "manifest":
        backend.query(
            "UPDATE releases SET manifest = "
            "CAST(replace(CAST(manifest AS TEXT), 'false', 'true ') AS BLOB) WHERE version = ?",
            v,
        )
    if case == "missing":
        # A file the service cannot serve (404): each attempt fails and costs a reset; after
        # three in a row the board gives the version up and reports it.
        backend.query("DELETE FROM release_files WHERE version = ? AND path = ?", v, "uplink.mpy")
    board, dev = new_board(micropython, backend, tmp_path, releases)
    try:
        wait_until(lambda: len(backend.seqs(dev)) >= 2, 30, "no readings")
        target(operator_env, v, [dev])
        row = wait_state(backend, dev, "refused", timeout=90)
        seen = len(backend.seqs(dev))
        wait_until(lambda: len(backend.seqs(dev)) > seen + 2, 30, "stopped counting")
    finally:
        board.stop()
    why = {
        "file": "uplink.mpy: SHA-256 mismatch",
        "manifest": "bad signature",
        "other_key": "bad signature",
        "downgrade": "0.9.0 is not newer than 1.0.0",
        "missing": "failed 3 times: 404",
    }
    assert row[0] == "1.0.0" and why[case] in row[3], row
    assert board.app() == ["app_a", "1.0.0", "-", "-", "-", "-"]
    assert_contiguous(backend.seqs(dev))


@pytest.mark.parametrize("case", ["crash_at_import", "never_uploads"])
def test_a_bad_release_rolls_back_by_itself(
    case: str, micropython: str, backend: Backend, operator_env: dict[str, str],
    releases: Releases, tmp_path: Path,
) -> None:  # fmt: skip
    if case == "crash_at_import":
        v = "1.3.1"
        release = releases.broken(
            v, "start.py", "import gc\n", "import gc\nraise ImportError('bug')\n"
        )
    else:
        v = "1.3.2"
        release = releases.broken(v, "assemble.py", '"/v1/counts"', '"/v1/nowhere"')
    publish(operator_env, release)
    board, dev = new_board(micropython, backend, tmp_path, releases)
    try:
        wait_until(lambda: len(backend.seqs(dev)) >= 2, 30, "no readings")
        target(operator_env, v, [dev])
        started = time.monotonic()
        row = wait_state(backend, dev, "rolled_back", timeout=90)
        took = time.monotonic() - started
        seen = len(backend.seqs(dev))
        wait_until(lambda: len(backend.seqs(dev)) > seen + 2, 30, "stopped counting")
    finally:
        board.stop()
    assert row[0] == "1.0.0", row
    bound = "boots" if case == "crash_at_import" else "6 s"
    assert f"{v} not confirmed within" in row[3] and bound in row[3], row
    assert took < 60, took
    assert board.app() == ["app_a", "1.0.0", "-", "-", "-", v]
    assert_contiguous(backend.seqs(dev))


def rollout(env: dict[str, str], *args: str) -> dict[str, Any]:
    done = parkctl("rollout", *args, "--json", env=env)
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


def test_canary_rollout_to_three_boards_ends_all_confirmed(
    micropython: str, backend: Backend, operator_env: dict[str, str], releases: Releases,
    tmp_path: Path,
) -> None:  # fmt: skip
    boards = [new_board(micropython, backend, tmp_path, releases, f"b{i}") for i in range(3)]
    ids = [dev for _, dev in boards]
    try:
        for dev in ids:
            wait_until(lambda d=dev: len(backend.seqs(d)) >= 2, 30, "no readings")
        publish(operator_env, releases.build("1.4.0"))
        started = time.monotonic()
        r = rollout(operator_env, "start", "1.4.0", "--devices", ",".join(ids),
                    "--canary", "1", "--canary-wait", "3s", "--silence", "20s")  # fmt: skip
        assert r["state"] == "canary" and [b["canary"] for b in r["boards"]] == [1, 0, 0]
        # Boards go in the order of a stable hash of their id, the canary first.
        ids = [b["device_id"] for b in r["boards"]]
        wait_until(lambda: rollout(operator_env, "status", str(r["id"]))["state"] == "done",
                   120, "the rollout never finished")  # fmt: skip
        took = time.monotonic() - started
        for dev in ids:
            row = wait_state(backend, dev, "confirmed")
            assert row[0] == "1.4.0", row
    finally:
        for board, _ in boards:
            board.stop()
    assert took >= 3  # the canary wait
    canary_ok = backend.query(
        "SELECT min(id) FROM audit_log WHERE action = 'agent.confirmed' AND target = ?", ids[0]
    )[0][0]
    for dev in ids[1:]:
        pending = backend.query(
            "SELECT min(id) FROM audit_log WHERE action = 'agent.pending' AND target = ?", dev
        )[0][0]
        assert pending > canary_ok, "a board got the release before the canary confirmed it"
        assert_contiguous(backend.seqs(dev))
    assert_contiguous(backend.seqs(ids[0]))


def test_a_canary_that_rolls_back_pauses_the_rollout(
    micropython: str, backend: Backend, operator_env: dict[str, str], releases: Releases,
    tmp_path: Path,
) -> None:  # fmt: skip
    release = releases.broken(
        "1.5.1", "start.py", "import gc\n", "import gc\nraise ImportError('bug')\n"
    )
    publish(operator_env, release)
    boards = [new_board(micropython, backend, tmp_path, releases, f"b{i}") for i in range(2)]
    ids = [dev for _, dev in boards]
    try:
        for dev in ids:
            wait_until(lambda d=dev: len(backend.seqs(d)) >= 2, 30, "no readings")
        r = rollout(operator_env, "start", "1.5.1", "--devices", ",".join(ids),
                    "--canary", "1", "--canary-wait", "2s", "--silence", "60s")  # fmt: skip
        wait_until(lambda: rollout(operator_env, "status")["state"] == "paused", 90,
                   "the rollout never paused")  # fmt: skip
        status = rollout(operator_env, "status", str(r["id"]))
    finally:
        for board, _ in boards:
            board.stop()
    canary = status["boards"][0]["device_id"]
    assert f"canary {canary} rolled_back" in status["reason"], status
    assert "not confirmed within 3 boots" in status["reason"], status
    rest = status["boards"][1]
    assert rest["version"] == "1.0.0" and rest["target"] is None, rest  # never offered


def test_power_cuts_during_an_update_lose_nothing(
    micropython: str, backend: Backend, operator_env: dict[str, str], releases: Releases,
    tmp_path: Path,
) -> None:  # fmt: skip
    """kill -9 at arbitrary instants of an update: while downloading, after checking, during
    the switch, during the first boots of the new version. The board always comes back on a
    working version, counts on, and needs no new token."""
    publish(operator_env, releases.build("1.6.0"))
    board, dev = new_board(micropython, backend, tmp_path, releases, trial_boots=10)
    rng = random.Random(10)
    try:
        wait_until(lambda: len(backend.seqs(dev)) >= 2, 30, "no readings")
        target(operator_env, "1.6.0", [dev])
        for _ in range(10):
            time.sleep(rng.uniform(0.05, 0.8))
            board.power_cut()
        row = wait_state(backend, dev, "confirmed", timeout=90)
        seen = len(backend.seqs(dev))
        wait_until(lambda: len(backend.seqs(dev)) > seen + 3, 30, "stopped counting")
    finally:
        board.stop()
    assert row[0] == "1.6.0", row
    assert board.app()[:2] == ["app_b", "1.6.0"]
    assert_contiguous(backend.seqs(dev))
    assert backend.tokens_issued(dev) == 1  # the token cache survived every cut
    assert board.boots >= 10


def test_a_download_cut_mid_file_resumes_with_range(
    micropython: str, backend: Backend, operator_env: dict[str, str], releases: Releases,
    tmp_path: Path,
) -> None:  # fmt: skip
    """The connection dies halfway through a module and the board is killed while it waits:
    after the reboot the download resumes where the .part file ends (206), the update goes
    through, nothing is lost."""
    publish(operator_env, releases.build("1.7.0"))
    proxy = FaultProxy(backend.port)
    proxy.fault = Fault(stall=True, path="/v1/releases/1.7.0/app/agent.mpy")
    device_id, secret = backend.create_device()
    config = board_config(device_id, secret, proxy.url, trial_limit_s=6)
    board = RebootingBoard(micropython, tmp_path / "board", config, releases.build("1.0.0"), HEAP)
    board.start()
    try:
        wait_until(lambda: len(backend.seqs(device_id)) >= 2, 30, "no readings")
        target(operator_env, "1.7.0", [device_id])
        wait_until(lambda: any(e.status == -1 for e in proxy.exchanges("/app/")), 30, "no stall")
        part = board.agent.board / "app_b" / "agent.mpy.part"
        wait_until(part.exists, 10, "no .part file")
        board.power_cut()  # killed while downloading
        proxy.fault = None
        row = wait_state(backend, device_id, "confirmed", timeout=60)
    finally:
        board.stop()
        proxy.close()
    assert row[0] == "1.7.0"
    statuses = [e.status for e in proxy.exchanges("/v1/releases/1.7.0/app/agent.mpy")]
    assert statuses[0] == -1 and 206 in statuses, statuses
    assert_contiguous(backend.seqs(device_id))
