"""`parkctl board info|flash|install`: real esptool and real mpremote against simulated boards,
and one clear message for each way a board or a file can be wrong."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from provisioning.fleet.files import DEVICE_DIR, agent_files
from tests.fleet.conftest import parkctl
from tools.simboard import SimBoard, make_firmware_image

APP_OFFSET = 0x1000  # ESP32


def test_info_flash_install_one_board(tmp_path: Path, firmware: Path) -> None:
    config = tmp_path / "board.json"
    config.write_text(json.dumps({"device_id": "dev-x", "client_secret": "not-a-real-one"}))
    with SimBoard(tmp_path / "board", chip="esp32", mac="24:0a:c4:00:00:01") as board:
        info = parkctl("board", "info", "--port", board.url, "--json")
        assert info.returncode == 0, info.stderr
        facts = json.loads(info.stdout)
        assert facts["mac"] == "24:0a:c4:00:00:01"
        assert facts["chip"].startswith("ESP32")
        assert facts["flash_size"] == 4 << 20
        assert facts["micropython"] is None  # blank flash: nothing to boot

        done = parkctl("board", "flash", "--port", board.url, "--firmware", str(firmware))
        assert done.returncode == 0, done.stderr
        assert "verified: the flash MD5 matches" in done.stdout
        image = firmware.read_bytes()
        flash = board.flash_path.read_bytes()
        assert flash[APP_OFFSET : APP_OFFSET + len(image)] == image
        assert set(flash[:APP_OFFSET]) == {0xFF}  # nothing else touched

        # The board booted MicroPython from the new image: mpremote finds its REPL.
        facts = json.loads(parkctl("board", "info", "--port", board.url, "--json").stdout)
        assert facts["micropython"].startswith("MicroPython")
        assert facts["agent"] is False

        done = parkctl("board", "install", "--port", board.url, "--config", str(config))
        assert done.returncode == 0, done.stderr
        for rel in agent_files(DEVICE_DIR):
            assert (board.fs_dir / rel).read_bytes() == (DEVICE_DIR / rel).read_bytes()
        assert json.loads((board.fs_dir / "config.json").read_text())["device_id"] == "dev-x"
        facts = json.loads(parkctl("board", "info", "--port", board.url, "--json").stdout)
        assert facts["agent"] is True


@pytest.mark.parametrize(
    ("fault", "chip", "message"),
    [
        ("no-sync", "esp32", "does not answer esptool (no SYNC reply)"),
        ("wrong-magic", "esp32", "not an ESP32-family chip"),
        (
            None,
            "esp32s3",
            "wrong chip: ESP32_GENERIC-v1.24.1.bin is built for ESP32 but the board is an ESP32-S3",
        ),
        ("flash-full", "esp32", "flash full"),
        ("md5-mismatch", "esp32", "flash verification failed (MD5"),
    ],
)
def test_flash_failures_are_one_clear_message(
    tmp_path: Path, firmware: Path, fault: str | None, chip: str, message: str
) -> None:
    if fault == "flash-full":  # a 256 KB chip: too small for a real-sized MicroPython image
        make_firmware_image(firmware, chip="esp32", size=1024 * 1024)
    with SimBoard(tmp_path / "board", chip=chip, fault=fault) as board:
        done = parkctl("board", "flash", "--port", board.url, "--firmware", str(firmware))
    assert done.returncode == 1
    assert message in done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    assert len(done.stderr.strip().splitlines()) <= 3, done.stderr


def test_missing_port_and_bad_firmware(tmp_path: Path, firmware: Path) -> None:
    gone = parkctl("board", "flash", "--port", "/dev/ttyUSB99", "--firmware", str(firmware))
    assert gone.returncode == 1 and "no such serial port" in gone.stderr
    refused = parkctl("board", "info", "--port", "socket://127.0.0.1:9")
    assert refused.returncode == 1 and "cannot open the port" in refused.stderr

    idf = tmp_path / "blink.bin"
    make_firmware_image(idf, chip="esp32")
    idf.write_bytes(idf.read_bytes().replace(b"MicroPython", b"HelloWorld!"))
    with SimBoard(tmp_path / "board", chip="esp32") as board:
        done = parkctl("board", "flash", "--port", board.url, "--firmware", str(idf))
        assert done.returncode == 1 and "not MicroPython" in done.stderr
        assert set(board.flash_path.read_bytes()) == {0xFF}  # refused before touching the board
