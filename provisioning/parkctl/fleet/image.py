"""Firmware checks before anything touches a board: is this file a MicroPython image for this chip,
and does it fit the board's flash?

The layout is the ESP-IDF app image format (ESP-IDF "App Image Format"): byte 0 is the magic 0xE9,
byte 3's high nibble the flash size, and on every ESP32-family chip a 16-byte extended header
follows the 8-byte common header with the chip id at offset 12 (little-endian u16). MicroPython's
release images for ESP32 are merged (bootloader + partition table + app) and written at the
bootloader offset, so the first header is the bootloader's and carries the same chip id.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

from esptool.targets import CHIP_DEFS

from provisioning.common.errors import ParkctlError

ESP_IMAGE_MAGIC = 0xE9
_HEADER_LEN = 8 + 16  # common header + extended header
_CHIP_ID_OFFSET = 12
# Every MicroPython build carries its banner ("MicroPython v1.x on <date>; <board> with <mcu>").
MICROPYTHON_SIGNATURE = b"MicroPython"


def _chip_names_by_image_id() -> dict[int, str]:
    return {
        cls.IMAGE_CHIP_ID: name
        for name, cls in CHIP_DEFS.items()
        if getattr(cls, "IMAGE_CHIP_ID", None) is not None
    }


def chip_name_for_image_id(image_chip_id: int) -> str | None:
    """esptool's chip name (`esp32`, `esp32s3`...) for the chip id of an image header."""
    return _chip_names_by_image_id().get(image_chip_id)


def flash_offset(chip: str) -> int:
    """Where the firmware goes for `chip`: the ROM loads the bootloader from there.

    0x1000 on ESP32 and ESP32-S2, 0x0 on ESP32-S3 and the C series; esptool knows it per chip.
    """
    try:
        return int(CHIP_DEFS[chip].BOOTLOADER_FLASH_OFFSET)
    except KeyError:
        raise ParkctlError(f"unknown chip {chip!r}") from None


@dataclass(frozen=True)
class FirmwareImage:
    """A checked firmware file: its bytes, and the chip it was built for."""

    path: Path
    data: bytes
    chip: str

    @property
    def size(self) -> int:
        return len(self.data)


def load_firmware(path: Path) -> FirmwareImage:
    """Read `path` and check it is a MicroPython image for a known ESP32-family chip."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ParkctlError(f"firmware file {path} does not exist") from None
    except OSError as error:
        raise ParkctlError(f"cannot read firmware file {path}: {error.strerror}") from None
    if len(data) < _HEADER_LEN or data[0] != ESP_IMAGE_MAGIC:
        raise ParkctlError(
            f"{path} is not an ESP firmware image (first byte is not 0x{ESP_IMAGE_MAGIC:02X}); "
            "download the MicroPython .bin for your board from micropython.org"
        )
    (image_chip_id,) = struct.unpack_from("<H", data, _CHIP_ID_OFFSET)
    chip = chip_name_for_image_id(image_chip_id)
    if chip is None:
        raise ParkctlError(f"{path}: unknown chip id {image_chip_id} in the image header")
    if MICROPYTHON_SIGNATURE not in data:
        raise ParkctlError(
            f"{path} is an ESP image but not MicroPython (no MicroPython banner inside); "
            "the agent needs MicroPython firmware"
        )
    return FirmwareImage(path=path, data=data, chip=chip)


def check_compatible(image: FirmwareImage, chip: str, flash_size: int | None) -> int:
    """Check `image` suits a board with `chip` and `flash_size` bytes; return the flash offset."""
    if image.chip != chip:
        raise ParkctlError(
            f"wrong chip: {image.path.name} is built for {CHIP_DEFS[image.chip].CHIP_NAME} "
            f"but the board is an {CHIP_DEFS[chip].CHIP_NAME}"
            if chip in CHIP_DEFS
            else f"wrong chip: firmware is for {image.chip}, board is {chip}"
        )
    offset = flash_offset(chip)
    if flash_size is not None and offset + image.size > flash_size:
        raise ParkctlError(
            f"flash full: {image.path.name} needs {offset + image.size} bytes from offset "
            f"0x{offset:x} but the board has {flash_size} bytes of flash; "
            "use a build for this flash size"
        )
    return offset
