"""Pieces of the simulator pinned against esptool's own implementation."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from esptool.bin_image import LoadFirmwareImage
from esptool.loader import ESPLoader

from tools.simboard.image import is_bootable, make_firmware_image, parse_image
from tools.simboard.rom import checksum
from tools.simboard.slip import SlipDecoder, encode


def test_slip_round_trip_in_any_chunking() -> None:
    payloads = [b"\xc0\xdb\xdc\xdd" + os.urandom(300), b"\xdb", b"plain"]
    stream = b"noise" + b"".join(encode(p) for p in payloads)
    for chunk in (1, 7, len(stream)):
        decoder = SlipDecoder()
        frames = [
            f for i in range(0, len(stream), chunk) for f in decoder.feed(stream[i : i + chunk])
        ]
        assert frames == payloads


@pytest.mark.parametrize("size", [0, 1, 3, 1024, 0x4000 + 5])
def test_checksum_matches_esptool(size: int) -> None:
    data = os.urandom(size)
    assert checksum(data) == ESPLoader.checksum(data)


@pytest.mark.parametrize("chip", ["esp32", "esp32s3", "esp32c3"])
def test_generated_image_is_what_esptool_reads(chip: str, tmp_path: Path) -> None:
    data = make_firmware_image(tmp_path / "fw.bin", chip=chip, size=100 * 1024)
    image = LoadFirmwareImage(chip, str(tmp_path / "fw.bin"))
    assert image.checksum == image.calculate_checksum()
    assert len(image.segments) == 4
    info = parse_image(data)
    assert info is not None and info.checksum_ok and info.sha256_ok
    assert b"MicroPython v1.24.1" in data
    assert is_bootable(data, image.ROM_LOADER.IMAGE_CHIP_ID)
    done = subprocess.run(
        [sys.executable, "-m", "esptool", "image-info", str(tmp_path / "fw.bin")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Checksum: " in done.stdout and "(valid)" in done.stdout
    assert "Project name: micropython" in done.stdout


def test_damaged_image_does_not_boot() -> None:
    data = bytearray(make_firmware_image(None, chip="esp32", size=8 * 1024))
    assert is_bootable(bytes(data), 0)
    assert not is_bootable(bytes(data), 9)  # an ESP32 image on an ESP32-S3
    data[100] ^= 1
    assert not is_bootable(bytes(data), 0)
    assert not is_bootable(b"\xff" * 4096, 0)
