"""The real esptool against the simulated ROM bootloader and flasher stub."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.simboard.conftest import esptool
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
    image = make_firmware_image(tmp_path / "fw.bin", chip=chip, size=200 * 1024)
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
