"""What each simulated chip answers to register reads: identity, eFuses, SPI flash controller.

Values follow esptool's target classes (esptool/targets/esp32*.py), which read them to detect the
chip (`CHIP_DETECT_MAGIC_REG_ADDR` on ESP32, GET_SECURITY_INFO's chip ID on ESP32-S3/C3), its
revision, the factory MAC in eFuse block 1 and, through the SPI controller, the flash JEDEC ID.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

CHIP_DETECT_MAGIC_REG = 0x40001000
UNKNOWN_MAGIC = 0xBADC0DE5  # what the wrong-magic fault reports: no esptool target has it
XTAL_HZ = 40_000_000

SPI_CMD_USR = 1 << 18
SPIFLASH_RDID = 0x9F
SPIFLASH_RDSFDP = 0x5A
SFDP_SIGNATURE = 0x50444653  # "SFDP", JESD216 §6.2.1


@dataclass(frozen=True)
class SpiRegs:
    """Offsets of the SPI flash controller registers esptool drives in run_spiflash_command()."""

    base: int
    usr2: int
    w0: int

    @property
    def cmd(self) -> int:
        return self.base

    @property
    def addr(self) -> int:
        return self.base + 0x04


@dataclass(frozen=True)
class Chip:
    name: str  # esptool's CHIP_NAME
    key: str  # the --chip argument
    app_offset: int  # where esptool writes the firmware and the ROM looks for an image
    image_chip_id: int  # GET_SECURITY_INFO chip ID and the image header's chip_id
    magic: int  # value at CHIP_DETECT_MAGIC_REG
    security_info: bool  # ROM knows GET_SECURITY_INFO (ESP32-S2 and later)
    rom_status_len: int  # status bytes after each ROM response (4 on ESP32, 2 later)
    spi: SpiRegs
    uart_clkdiv_reg: int
    fixed: dict[int, int] = field(default_factory=dict)  # other registers with constant values

    def efuse_mac_regs(self, mac: bytes) -> dict[int, int]:
        """The two eFuse words esptool's read_mac() turns into the factory MAC."""
        if self.key == "esp32":
            # ESP32: BLK0 words 1 and 2; word 2 = CRC8 << 16 | mac[0:2] (esp32.py read_mac).
            base = 0x3FF5A000
            high = (_crc8(mac) << 16) | int.from_bytes(mac[:2], "big")
            return {base + 4: int.from_bytes(mac[2:], "big"), base + 8: high}
        reg = _MAC_EFUSE_REG[self.key]
        return {reg: int.from_bytes(mac[2:], "big"), reg + 4: int.from_bytes(mac[:2], "big")}


def _crc8(data: bytes) -> int:
    """eFuse MAC CRC (CRC-8/MAXIM, reflected poly 0x8C), stored beside the ESP32 factory MAC."""
    crc = 0
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x8C if crc & 1 else crc >> 1
    return crc


_MAC_EFUSE_REG = {"esp32s3": 0x60007044, "esp32c3": 0x60008844}

# ESP32-D0WD-V3 rev v3.0: pkg 1 (word3 bits 9-11), rev bits in word3/word5/APB_CTL_DATE;
# CK8M calibration + RTC cali value chosen so the ROM-calculated crystal is 40 MHz.
_ESP32_EFUSE = 0x3FF5A000
_ESP32_FIXED = {
    _ESP32_EFUSE + 0x0C: (1 << 9) | (1 << 15),
    _ESP32_EFUSE + 0x10: 200,  # EFUSE_RD_CK8M_FREQ
    _ESP32_EFUSE + 0x14: 1 << 20,
    0x3FF6607C: 1 << 31,  # APB_CTL_DATE: revision bit 2
    0x3FF5F06C: 512 << 7,  # RTCCALICFG1: 512 * 15625 * 200 / 40 = 40 MHz
}
# ESP32-S3 (QFN56) v0.2 and ESP32-C3 (QFN32) v0.4: minor revision in BLOCK1 word 3 bits 18-20,
# block version 1.1 so esptool does not apply its ECO0 workaround.
_ESP32S3_FIXED = {0x60007044 + 12: (2 << 18) | (1 << 24), 0x6000705C + 16: 1}
_ESP32C3_FIXED = {0x60008844 + 12: (4 << 18) | (1 << 24)}


def _later_chip(name: str, key: str, chip_id: int, magic: int, fixed: dict[int, int]) -> Chip:
    """An ESP32-S3 or -C3: the image at 0, GET_SECURITY_INFO, two status bytes, and the same
    SPI flash controller and UART addresses."""
    return Chip(
        name=name,
        key=key,
        app_offset=0x0,
        image_chip_id=chip_id,
        magic=magic,
        security_info=True,
        rom_status_len=2,
        spi=SpiRegs(base=0x60002000, usr2=0x60002020, w0=0x60002058),
        uart_clkdiv_reg=0x60000014,
        fixed=fixed,
    )


CHIPS = {
    "esp32": Chip(
        name="ESP32",
        key="esp32",
        app_offset=0x1000,
        image_chip_id=0,
        magic=0x00F01D83,
        security_info=False,
        rom_status_len=4,
        spi=SpiRegs(base=0x3FF42000, usr2=0x3FF42024, w0=0x3FF42080),
        uart_clkdiv_reg=0x3FF40014,
        fixed=_ESP32_FIXED,
    ),
    "esp32s3": _later_chip("ESP32-S3", "esp32s3", 9, 0x00000009, _ESP32S3_FIXED),
    "esp32c3": _later_chip("ESP32-C3", "esp32c3", 5, 0x1B31506F, _ESP32C3_FIXED),
}


def get_chip(key: str) -> Chip:
    try:
        return CHIPS[key]
    except KeyError:
        raise ValueError(f"chip must be one of {', '.join(CHIPS)}, not {key!r}") from None


def security_info(chip: Chip) -> bytes:
    """GET_SECURITY_INFO payload: flags, flash_crypt_cnt, 7 key purposes, chip ID, API version."""
    return struct.pack("<IBBBBBBBBII", 0, 0, 0, 0, 0, 0, 0, 0, 0, chip.image_chip_id, 0)


class Registers:
    """The register file a ROM or stub session sees; unknown addresses read as written or 0."""

    def __init__(self, chip: Chip, mac: bytes, flash_jedec_id: int, wrong_magic: bool) -> None:
        self.chip = chip
        self.baud = 115200
        self._flash_jedec_id = flash_jedec_id
        self._values: dict[int, int] = dict(chip.fixed)
        self._values.update(chip.efuse_mac_regs(mac))
        self._values[CHIP_DETECT_MAGIC_REG] = UNKNOWN_MAGIC if wrong_magic else chip.magic

    def read(self, addr: int) -> int:
        if addr == self.chip.uart_clkdiv_reg:
            # The ROM derives the UART divider from the 40 MHz APB clock (get_crystal_freq()).
            return XTAL_HZ // self.baud
        return self._values.get(addr, 0)

    def write(self, addr: int, value: int, mask: int) -> None:
        old = self._values.get(addr, 0)
        self._values[addr] = (old & ~mask) | (value & mask)
        if addr == self.chip.spi.cmd and value & SPI_CMD_USR:
            self._run_spi_command()

    def _run_spi_command(self) -> None:
        """Execute the user SPI command esptool set up, then clear the busy bit."""
        spi = self.chip.spi
        opcode = self._values.get(spi.usr2, 0) & 0xFF
        if opcode == SPIFLASH_RDID:
            result = self._flash_jedec_id
        elif opcode == SPIFLASH_RDSFDP and self._values.get(spi.addr, 0) == 0:
            result = SFDP_SIGNATURE
        else:
            result = 0  # status registers: not busy, no protection bits
        self._values[spi.w0] = result
        self._values[spi.cmd] = 0
