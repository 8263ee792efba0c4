"""The real esptool against the simulated ROM bootloader and flasher stub."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.tools.simboard.conftest import esptool
from tools.simboard import SimBoard, make_firmware_image

APP_OFFSET = {"esp32": 0x1000, "esp32s3": 0x0, "esp32c3": 0x0}
CHIP_NAME = {"esp32": "ESP32", "esp32s3": "ESP32-S3", "esp32c3": "ESP32-C3"}


@pytest.mark.parametrize("chip", ["esp32", "esp32s3", "esp32c3"])
def test_identity_mac_and_flash_id(board_factory: Callable[..., SimBoard], chip: str) -> None:
    board = board_factory(chip=chip, mac="24:0a:c4:12:34:56", flash_size="8MB")
    done = esptool(board.url, "flash-id")
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"Detecting chip type... {CHIP_NAME[chip]}" in done.stdout
    assert "MAC:                24:0a:c4:12:34:56" in done.stdout
    assert "Detected flash size: 8MB" in done.stdout
    assert "Stub flasher running." in done.stdout


@pytest.mark.parametrize("chip", ["esp32", "esp32s3", "esp32c3"])
def test_write_flash_lands_byte_for_byte(
    board_factory: Callable[..., SimBoard], tmp_path: Path, chip: str
) -> None:
    board = board_factory(chip=chip)
    image = make_firmware_image(tmp_path / "fw.bin", chip=chip, size=96 * 1024)
    offset = APP_OFFSET[chip]
    done = esptool(
        board.url, "--baud", "460800", "write-flash", hex(offset), str(tmp_path / "fw.bin")
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Hash of data verified." in done.stdout
    flash = board.flash_path.read_bytes()
    assert flash[offset : offset + len(image)] == image
    assert set(flash[offset + len(image) :]) == {0xFF}
    assert set(flash[:offset]) <= {0xFF}


def test_rom_only_uncompressed_verify_read_and_erase(
    board_factory: Callable[..., SimBoard], tmp_path: Path
) -> None:
    board = board_factory(chip="esp32")
    image = make_firmware_image(tmp_path / "fw.bin", chip="esp32", size=12 * 1024)
    # The ROM loader itself (no stub), plain FLASH_DATA blocks.
    done = esptool(
        board.url, "--no-stub", "write-flash", "--no-compress", "0x1000", str(tmp_path / "fw.bin")
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert board.flash_bytes(0x1000, len(image)) == image
    # The stub again: MD5 verify, READ_FLASH, erase a region, erase everything.
    done = esptool(board.url, "verify-flash", "0x1000", str(tmp_path / "fw.bin"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Verification successful (digest matched)." in done.stdout
    done = esptool(board.url, "read-flash", "0x1000", hex(len(image)), str(tmp_path / "back.bin"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "back.bin").read_bytes() == image
    done = esptool(board.url, "erase-region", "0x1000", "0x1000")
    assert done.returncode == 0, done.stdout + done.stderr
    assert set(board.flash_bytes(0x1000, 0x1000)) == {0xFF}
    assert board.flash_bytes(0x2000, 16) == image[0x1000:0x1010]
    done = esptool(board.url, "erase-flash")
    assert done.returncode == 0, done.stdout + done.stderr
    assert set(board.flash_path.read_bytes()) == {0xFF}


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        ("no-sync", "Failed to connect to Espressif device: No serial data received."),
        ("wrong-magic", "Unexpected chip magic value 0xbadc0de5. Failed to autodetect chip type."),
        ("md5-mismatch", "MD5 of file does not match data in flash!"),
        ("flash-full", "will not fit in 262144 bytes of flash"),
    ],
)
def test_faults_give_esptools_own_errors(
    board_factory: Callable[..., SimBoard], tmp_path: Path, fault: str, message: str
) -> None:
    board = board_factory(fault=fault)
    # flash-full needs an image bigger than its 256 KB chip; the others fail before size matters.
    size = 300 * 1024 if fault == "flash-full" else 32 * 1024
    make_firmware_image(tmp_path / "fw.bin", chip="esp32", size=size)
    done = esptool(
        board.url, "--connect-attempts", "1", "write-flash", "0x1000", str(tmp_path / "fw.bin")
    )
    assert done.returncode == 2
    assert message in done.stdout + done.stderr


def test_vanish_mid_flash_and_esptool_reconnects(
    board_factory: Callable[..., SimBoard], tmp_path: Path
) -> None:
    # The board drops off halfway through the write and is back 1 s later; esptool's own
    # "Lost connection, retrying..." reconnects, reloads the stub and writes everything again.
    board = board_factory(fault="vanish-mid-flash", vanish_seconds=1.0)
    image = make_firmware_image(tmp_path / "fw.bin", chip="esp32", size=100 * 1024)
    done = esptool(board.url, "write-flash", "0x1000", str(tmp_path / "fw.bin"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Lost connection, retrying..." in done.stdout
    assert board.flash_bytes(0x1000, len(image)) == image
    assert "vanishing halfway through a flash write" in board.log()


def test_after_modes_decide_what_the_board_does(
    board_factory: Callable[..., SimBoard], tmp_path: Path
) -> None:
    board = board_factory(chip="esp32")
    make_firmware_image(tmp_path / "fw.bin", chip="esp32", size=24 * 1024)
    fw = str(tmp_path / "fw.bin")
    # --after no-reset: the stub is told to stay in the loader, so closing the port boots nothing.
    done = esptool(board.url, "--after", "no-reset", "write-flash", "0x1000", fw)
    assert done.returncode == 0, done.stdout + done.stderr
    time.sleep(0.3)
    assert board.state()["mode"] == "bootloader"
    # The ROM's "run user code" starts the app at once.
    done = esptool(board.url, "--no-stub", "--after", "no-reset", "run")
    assert done.returncode == 0, done.stdout + done.stderr
    board.wait_for_mode("micropython")
    # Default --after hard-reset: the board boots when esptool closes the port, also after a
    # session that stayed in the loader.
    for after in ("no-reset", "hard-reset"):
        done = esptool(board.url, "--after", after, "chip-id")
        assert done.returncode == 0, done.stdout + done.stderr
    board.wait_for_mode("micropython")
    assert board.console().count("rst:0x1 (POWERON_RESET)") == 2
