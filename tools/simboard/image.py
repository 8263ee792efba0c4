"""ESP application images: the check the ROM makes before booting, and a test image generator.

Layout (ESP-IDF "App Image Format"): an 8-byte header (magic 0xE9, segment count, SPI mode,
size/frequency, entry point), a 16-byte extended header (chip ID, revisions, hash-appended flag),
segments (load address, length, data), padding so the checksum byte ends on a 16-byte boundary,
the checksum (XOR of all segment data seeded with 0xEF) and, if flagged, a SHA-256 of everything
before it. The first DROM segment starts with `esp_app_desc_t` (magic 0xABCD5432).
"""

from __future__ import annotations

import hashlib
import random
import struct
from dataclasses import dataclass
from pathlib import Path

from tools.simboard.chips import get_chip
from tools.simboard.rom import CHECKSUM_SEED, checksum

IMAGE_MAGIC = 0xE9
APP_DESC_MAGIC = 0xABCD5432
MICROPYTHON_VERSION = "v1.24.1"
MAX_SEGMENTS = 16
_HEADER = struct.Struct("<BBBBI")
_EXTENDED_HEADER = struct.Struct("<BBBBHBHH4sB")
_SEGMENT = struct.Struct("<II")

# Load addresses of the segments a MicroPython build has: DROM (rodata, app descriptor first),
# DRAM, IRAM and IROM (code), per chip.
_SEGMENT_ADDRESSES = {
    "esp32": (0x3F400020, 0x3FFB0000, 0x40080000, 0x400D0020),
    "esp32s3": (0x3C000020, 0x3FC88000, 0x40374000, 0x42000020),
    "esp32c3": (0x3C000020, 0x3FC8A000, 0x40380000, 0x42000020),
}


@dataclass(frozen=True)
class ImageInfo:
    chip_id: int
    segments: int
    size: int  # bytes up to and including the checksum and digest
    checksum_ok: bool
    sha256_ok: bool | None  # None when no digest is appended


def parse_image(data: bytes) -> ImageInfo | None:
    """Header-level check of an app image at the start of `data`; None if it is not one."""
    if len(data) < _HEADER.size + _EXTENDED_HEADER.size or data[0] != IMAGE_MAGIC:
        return None
    _, count, _, _, _ = _HEADER.unpack_from(data)
    ext = _EXTENDED_HEADER.unpack_from(data, _HEADER.size)
    chip_id, hash_appended = ext[4], ext[-1]
    if not 0 < count <= MAX_SEGMENTS or hash_appended not in (0, 1):
        return None
    pos = _HEADER.size + _EXTENDED_HEADER.size
    state = CHECKSUM_SEED
    for _ in range(count):
        if pos + _SEGMENT.size > len(data):
            return None
        _, length = _SEGMENT.unpack_from(data, pos)
        pos += _SEGMENT.size
        if pos + length > len(data):
            return None
        state ^= checksum(data[pos : pos + length]) ^ CHECKSUM_SEED
        pos += length
    pos += 15 - pos % 16  # the checksum is the last byte of a 16-byte block
    if pos >= len(data):
        return None
    checksum_ok = data[pos] == state
    pos += 1
    sha256_ok = None
    if hash_appended:
        sha256_ok = hashlib.sha256(data[:pos]).digest() == data[pos : pos + 32]
        pos += 32
    return ImageInfo(chip_id, count, pos, checksum_ok, sha256_ok)


def is_bootable(data: bytes, chip_id: int) -> bool:
    """What the simulated ROM requires before it boots: a well-formed image for this chip."""
    info = parse_image(data)
    if info is None or info.chip_id != chip_id:
        return False
    return info.checksum_ok and info.sha256_ok is not False


def _app_desc(version: str) -> bytes:
    """`esp_app_desc_t` (256 bytes) as ESP-IDF places it at the start of the first DROM segment."""
    return struct.pack(
        "<II8s32s32s16s16s32s32sHHB3s72s",
        APP_DESC_MAGIC,
        0,
        b"",
        version.encode(),
        b"micropython",
        b"00:00:00",
        b"Jan  1 2025",
        b"v5.2.2",
        hashlib.sha256(version.encode()).digest(),
        0,
        0,
        0,
        b"",
        b"",
    )


def make_firmware_image(
    path: Path | str | None, chip: str = "esp32", size: int = 64 * 1024, seed: int = 0
) -> bytes:
    """A synthetic but well-formed MicroPython-like app image for `chip`, about `size` bytes.

    esptool's `image-info` accepts it (magic, segments, checksum, appended SHA-256, app
    descriptor with project "micropython"), it carries the MicroPython banner string the fleet
    tool looks for, and its filler compresses about as well as real firmware. Written to `path`
    when given; the bytes are returned either way.
    """
    info = get_chip(chip)
    banner = f"MicroPython {MICROPYTHON_VERSION} on 2024-11-29; Generic {info.name} module"
    rodata = _app_desc(MICROPYTHON_VERSION) + banner.encode() + b"\0"
    rng = random.Random(seed)
    filler_size = max(0, size - 256 - len(rodata))
    # Real firmware deflates to ~60 %: alternate random runs with repeated runs, 64:48.
    filler = bytearray()
    while len(filler) < filler_size:
        filler += rng.randbytes(64) + bytes([rng.randrange(4)]) * 48
    filler = filler[:filler_size]
    drom_addr, dram_addr, iram_addr, irom_addr = _SEGMENT_ADDRESSES[chip]
    third = len(filler) // 3
    segments = [
        (drom_addr, rodata + bytes(filler[:third])),
        (dram_addr, bytes(256)),
        (iram_addr, bytes(filler[third : 2 * third])),
        (irom_addr, bytes(filler[2 * third :])),
    ]
    out = bytearray(_HEADER.pack(IMAGE_MAGIC, len(segments), 2, 0x20, iram_addr + 0x400))
    # max_rev_full 0xFFFF: "any revision", like release builds; hash appended.
    out += _EXTENDED_HEADER.pack(0xEE, 0, 0, 0, info.image_chip_id, 0, 0, 0xFFFF, b"", 1)
    state = CHECKSUM_SEED
    for addr, payload in segments:
        payload += b"\0" * (-len(payload) % 4)
        out += _SEGMENT.pack(addr, len(payload)) + payload
        state ^= checksum(payload) ^ CHECKSUM_SEED
    out += b"\0" * (15 - len(out) % 16)
    out.append(state)
    out += hashlib.sha256(out).digest()
    image = bytes(out)
    if path is not None:
        Path(path).write_bytes(image)
    return image
