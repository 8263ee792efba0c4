"""The board's SPI NOR flash, kept in a file (`flash.bin`) so tests can compare it byte for byte."""

from __future__ import annotations

import hashlib
from pathlib import Path

SECTOR_SIZE = 0x1000  # the smallest erasable unit of SPI NOR flash
ERASED = 0xFF

SIZES = {
    "256KB": 256 * 1024,
    "512KB": 512 * 1024,
    "1MB": 1 << 20,
    "2MB": 2 << 20,
    "4MB": 4 << 20,
    "8MB": 8 << 20,
    "16MB": 16 << 20,
}

# JEDEC RDID capacity byte (log2 of the size in bytes), as esptool's DETECTED_FLASH_SIZES reads it.
_WINBOND = 0xEF
_W25Q_MEMORY_TYPE = 0x40


def parse_size(text: str) -> int:
    """`"4MB"` -> 4194304; raises ValueError for a size a flash chip does not come in."""
    try:
        return SIZES[text.upper()]
    except KeyError:
        raise ValueError(f"flash size must be one of {', '.join(SIZES)}, not {text!r}") from None


class Flash:
    """Flash contents backed by a file of exactly `size` bytes, 0xFF where erased.

    Writes go straight to the file (no caching), so another process can read `flash.bin` at any
    time and see what a real chip would hold.
    """

    def __init__(self, path: Path, size: int) -> None:
        self.path = path
        self.size = size
        if not path.exists() or path.stat().st_size != size:
            self._create()

    def _create(self) -> None:
        old = self.path.read_bytes()[: self.size] if self.path.exists() else b""
        self.path.write_bytes(old + bytes([ERASED]) * (self.size - len(old)))

    @property
    def jedec_id(self) -> int:
        """RDID answer as the SPI W0 register holds it: manufacturer, type, capacity (LSB first)."""
        capacity = self.size.bit_length() - 1
        return _WINBOND | (_W25Q_MEMORY_TYPE << 8) | (capacity << 16)

    def contains(self, offset: int, length: int) -> bool:
        return offset >= 0 and offset + length <= self.size

    def read(self, offset: int, length: int) -> bytes:
        with self.path.open("rb") as f:
            f.seek(offset)
            return f.read(length)

    def write(self, offset: int, data: bytes) -> None:
        """Program `data` at `offset` (the region must have been erased, as on a real chip)."""
        if not self.contains(offset, len(data)):
            raise ValueError(f"write of {len(data)} bytes at {offset:#x} is past the flash end")
        with self.path.open("r+b") as f:
            f.seek(offset)
            f.write(data)

    def erase(self, offset: int, length: int) -> None:
        """Erase whole sectors covering [offset, offset + length)."""
        start = offset - offset % SECTOR_SIZE
        end = min(self.size, -(-(offset + length) // SECTOR_SIZE) * SECTOR_SIZE)
        if end <= start:
            return
        with self.path.open("r+b") as f:
            f.seek(start)
            f.write(bytes([ERASED]) * (end - start))

    def erase_all(self) -> None:
        self.erase(0, self.size)

    def md5(self, offset: int, length: int) -> bytes:
        digest = hashlib.md5(usedforsecurity=False)
        with self.path.open("rb") as f:
            f.seek(offset)
            remaining = length
            while remaining > 0:
                chunk = f.read(min(remaining, 1 << 16))
                if not chunk:
                    break
                digest.update(chunk)
                remaining -= len(chunk)
        return digest.digest()
