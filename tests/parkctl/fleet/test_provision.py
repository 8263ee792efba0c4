"""`parkctl provision` and `parkctl fleet provision` end to end: the real service, an operator from
`parkctl admin create`, simulated boards running the real agent, counts arriving at the service."""

from __future__ import annotations

import json
import subprocess
from contextlib import ExitStack
from pathlib import Path

from provisioning.common.bundle import install_plan
from tests.parkctl.fleet.conftest import Operator
from tools.harness.parkctl import parkctl
from tools.simboard import SimBoard

APP_OFFSET = 0x1000  # where the firmware goes on an ESP32
FAST = ["--interval", "1", "--verify-timeout", "40"]


def _cars(board: SimBoard, cars: int) -> None:
    """What the board's file sensor reads (the agent takes no reading without it)."""
    board.fs_dir.mkdir(parents=True, exist_ok=True)
    (board.fs_dir / "cars.txt").write_text(f"{cars}\n")


def _board_secret(board: SimBoard) -> str:
    return str(json.loads((board.fs_dir / "config.json").read_text())["client_secret"])


def test_one_board_from_blank_to_counting(
    tmp_path: Path, operator: Operator, firmware: Path
) -> None:
    """board info/flash/install, then provision, then provision again (same client, new secret)."""
    wifi = tmp_path / "wifi.txt"
    wifi.write_text("lot-wifi-password\n")

    def provision(url: str, name: str) -> subprocess.CompletedProcess[str]:
        return parkctl(
            "provision", "--port", url, "--lot", "north", "--name", name,
            "--firmware", str(firmware), "--wifi-ssid", "lotnet",
            "--wifi-password-file", str(wifi), *FAST, env=operator.env,
        )  # fmt: skip

    with SimBoard(tmp_path / "board", chip="esp32", mac="24:0a:c4:00:00:11") as board:
        _board_commands(board, firmware, tmp_path)
        _cars(board, 7)
        first = provision(board.url, "gate-1")
        assert first.returncode == 0, first.stdout + first.stderr
        [device] = operator.devices()
        assert (device.mac, device.lot, device.name) == ("24:0a:c4:00:00:11", "north", "gate-1")
        assert operator.wait_for_reading(device.client_id).reading is not None
        config = json.loads((board.fs_dir / "config.json").read_text())
        assert config["device_id"] == device.client_id
        assert config["wifi"] == {"ssid": "lotnet", "password": "lot-wifi-password"}
        old_secret = config["client_secret"]

        # Same board again, new name: same client, fresh secret, no orphan.
        again = provision(board.url, "gate-1b")
        assert again.returncode == 0, again.stdout + again.stderr
        [device2] = operator.devices()
        assert (device2.client_id, device2.name) == (device.client_id, "gate-1b")
        new_secret = _board_secret(board)
        assert new_secret != old_secret
        for text in (
            first.stdout,
            first.stderr,
            again.stdout,
            again.stderr,
            operator.service.log(),
        ):
            assert old_secret not in text and new_secret not in text
            assert "lot-wifi-password" not in text


def _board_commands(board: SimBoard, firmware: Path, tmp_path: Path) -> None:
    """`parkctl board info|flash|install` on a blank board: real esptool, real mpremote."""
    facts = json.loads(parkctl("board", "info", "--port", board.url, "--json").stdout)
    assert facts["mac"] == "24:0a:c4:00:00:11" and facts["chip"].startswith("ESP32")
    assert facts["flash_size"] == 4 << 20
    assert facts["micropython"] is None  # blank flash: nothing to boot

    done = parkctl("board", "flash", "--port", board.url, "--firmware", str(firmware))
    assert done.returncode == 0, done.stderr
    assert "verified: the flash MD5 matches" in done.stdout
    image, flash = firmware.read_bytes(), board.flash_path.read_bytes()
    assert flash[APP_OFFSET : APP_OFFSET + len(image)] == image  # byte for byte
    assert set(flash[:APP_OFFSET]) == {0xFF}  # nothing else touched
    facts = json.loads(parkctl("board", "info", "--port", board.url, "--json").stdout)
    assert facts["micropython"].startswith("MicroPython") and facts["agent"] is False

    config = tmp_path / "board.json"
    config.write_text(json.dumps({"device_id": "dev-x", "client_secret": "not-a-real-one"}))
    done = parkctl("board", "install", "--port", board.url, "--config", str(config))
    assert done.returncode == 0, done.stderr
    # The agent as .mpy but main.py, byte for byte what the release build makes: the boot
    # stub at the root, the modules in app_a/, the state file `state` naming them.
    bundle = install_plan(None).files
    assert "main.py" in {name for _, name in bundle} and len(bundle) > 2
    for src, name in bundle:
        assert (board.fs_dir / name).read_bytes() == src.read_bytes()
    assert sorted(p.name for p in board.fs_dir.glob("*.py")) == ["main.py"]
    assert (board.fs_dir / "state").read_text() == "app_a 0.0.0 - - - -"
    assert json.loads((board.fs_dir / "config.json").read_text())["device_id"] == "dev-x"
    assert json.loads(parkctl("board", "info", "--port", board.url, "--json").stdout)["agent"]


def test_unreachable_server_is_one_message(tmp_path: Path, firmware: Path) -> None:
    env = {
        "PARK_SERVER": "http://127.0.0.1:9",
        "PARK_CLIENT_ID": "op",
        "PARK_CLIENT_SECRET": "x" * 43,
        "PARK_CACHE_DIR": str(tmp_path / "cache"),
    }
    import os

    with SimBoard(tmp_path / "board", chip="esp32") as board:
        done = parkctl(
            "provision", "--port", board.url, "--lot", "north", "--firmware", str(firmware),
            env={**os.environ, **env, "COLUMNS": "200"},
        )  # fmt: skip
        assert set(board.flash_path.read_bytes()) == {0xFF}  # nothing flashed for nobody
    assert done.returncode == 1
    assert "cannot reach http://127.0.0.1:9" in done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr


def test_fleet_parallel_failure_and_resume(
    tmp_path: Path, operator: Operator, firmware: Path
) -> None:
    with ExitStack() as stack:
        boards = [
            stack.enter_context(
                SimBoard(
                    tmp_path / f"board{i}",
                    chip="esp32",
                    mac=f"24:0a:c4:00:01:{i:02x}",
                    fault="vanish-mid-copy" if i == 2 else None,
                    vanish_seconds=2,
                )
            )
            for i in range(3)
        ]
        for i, board in enumerate(boards):
            _cars(board, 10 + i)
        manifest = tmp_path / "fleet.csv"
        manifest.write_text(
            "port,lot,name\n"
            + "".join(
                f"{b.url},{'north' if i < 2 else 'south'},gate-{i}\n" for i, b in enumerate(boards)
            )
        )
        base = ["fleet", "provision", str(manifest), "--firmware", str(firmware), "--jobs", "3"]

        plan = parkctl(*base, "--dry-run", env=operator.env)
        assert plan.returncode == 0, plan.stderr
        assert "register, flash, install, verify" in plan.stdout
        assert operator.devices() == [] and not (tmp_path / "fleet.state.json").exists()

        first = parkctl(*base, *FAST, env=operator.env)
        assert first.returncode == 1, first.stdout + first.stderr
        assert "1 board(s) failed" in first.stderr
        assert f"{boards[2].url} (registered as" in first.stderr
        assert "install: " in first.stderr and "re-run" in first.stderr
        state = json.loads((tmp_path / "fleet.state.json").read_text())["boards"]
        assert state[boards[2].url]["steps"] == ["register", "flash"]
        assert state[boards[0].url]["steps"] == ["register", "flash", "install", "verify"]
        registered = {d.mac: d.client_id for d in operator.devices()}
        assert len(registered) == 3

        second = parkctl(*base, *FAST, env=operator.env)
        assert second.returncode == 0, second.stdout + second.stderr
        assert "3/3 boards ready" in second.stdout
        after = {d.mac: d.client_id for d in operator.devices()}
        assert after == registered  # resumed, never registered twice

        secrets = [_board_secret(b) for b in boards]
        for client_id in after.values():
            assert operator.wait_for_reading(client_id).reading is not None
        state_text = (tmp_path / "fleet.state.json").read_text()
        for text in (first.stdout, first.stderr, second.stdout, second.stderr, state_text,
                     operator.service.log()):  # fmt: skip
            for secret in secrets:
                assert secret not in text
